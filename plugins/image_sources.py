"""Image sources ``folder`` (files under a folder, categories from subfolders), ``words``, and the
dataset formats ``webdataset`` (tar shards) and ``parquet`` (img2dataset's output)."""

from __future__ import annotations

from mmneurons.dataset_sources import ParquetSource, WebDatasetSource
from mmneurons.images import FolderSource, WordSource
from mmneurons.kinds import ImageSourceFactory
from mmneurons.params import Param


class FolderSourceFactory(ImageSourceFactory):
    name = "folder"
    description = "Every image under a folder; the first subfolder names the category."
    params = (Param("path", "str", help="folder of images (subfolders become categories)"),
              Param("recursive", "bool", True, help="include images in subfolders"))

    def create(self, path: str, recursive: bool = True) -> FolderSource:
        return FolderSource(path, recursive=recursive)


class WordSourceFactory(ImageSourceFactory):
    name = "words"
    description = "Words rendered as black-on-white images, one per line of a text file."
    params = (Param("path", "str", help="text file with one word per line"),
              Param("size", "int", 224, min=16, max=1024, help="image side in pixels"))

    def create(self, path: str, size: int = 224) -> WordSource:
        return WordSource.from_file(path, size=size)


_CATEGORY_HELP = "what names an image's category: auto (a label where present, else the caption), a field, or none"


class WebDatasetSourceFactory(ImageSourceFactory):
    name = "webdataset"
    description = "Samples of WebDataset tar shards; category from cls/label, else the caption (txt)."
    params = (Param("path", "str", help="a shard, a folder of .tar shards, a glob or a brace range "
                                        "(shards/{00000..00009}.tar)"),
              Param("category", "str", "auto", help=_CATEGORY_HELP))

    def create(self, path: str, category: str = "auto") -> WebDatasetSource:
        return WebDatasetSource(path, category=category)


class ParquetSourceFactory(ImageSourceFactory):
    name = "parquet"
    description = "Rows of parquet files with image bytes or paths (img2dataset's output); category from a label, " \
                  "else the caption."
    params = (Param("path", "str", help="a parquet file, a folder of them or a glob"),
              Param("image_column", "str", "auto", help="the column with image bytes or paths (auto: jpg, image, "
                                                        "path, ...)"),
              Param("category", "str", "auto", help=_CATEGORY_HELP))

    def create(self, path: str, image_column: str = "auto", category: str = "auto") -> ParquetSource:
        return ParquetSource(path, image_column=image_column, category=category)
