"""Image sources ``folder`` and ``words``."""

from mmneurons.hookspecs import hookimpl


@hookimpl
def mmneurons_image_sources():
    from mmneurons.plugins.image_sources import FolderSourceFactory, WordSourceFactory

    return [FolderSourceFactory(), WordSourceFactory()]
