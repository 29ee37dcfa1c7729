"""Any open_clip architecture, pretrained tag or local checkpoint as a model provider."""

from mmneurons.hookspecs import hookimpl


@hookimpl
def mmneurons_model_providers():
    from mmneurons.plugins.openclip_models import OpenClipProvider

    return [OpenClipProvider()]
