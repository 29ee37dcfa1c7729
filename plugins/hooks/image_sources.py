"""Image sources ``folder``, ``words``, ``webdataset`` and ``parquet``."""

from mmneurons.hookspecs import hookimpl


@hookimpl
def mmneurons_image_sources():
    from mmneurons.plugins.image_sources import (FolderSourceFactory, ParquetSourceFactory, WebDatasetSourceFactory,
                                                 WordSourceFactory)

    return [FolderSourceFactory(), WordSourceFactory(), WebDatasetSourceFactory(), ParquetSourceFactory()]
