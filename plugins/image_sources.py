"""Image sources ``folder`` (files under a folder, categories from subfolders) and ``words``."""

from __future__ import annotations

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
