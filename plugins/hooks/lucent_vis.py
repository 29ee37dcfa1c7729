"""Feature visualization on Lucent's objectives and parameterization."""

from mmneurons.hookspecs import hookimpl


@hookimpl
def mmneurons_visualizers():
    from mmneurons.plugins.lucent_vis import VISUALIZERS

    return [cls() for cls in VISUALIZERS]


@hookimpl
def mmneurons_commands():
    from mmneurons.plugins.facet_commands import facet_cli

    return [facet_cli]
