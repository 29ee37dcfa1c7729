"""The app: the built-in result panels and ``mmneurons app``."""

from mmneurons.hookspecs import hookimpl


@hookimpl
def mmneurons_renderers():
    from mmneurons.plugins.ui.renderers import RENDERERS

    return [cls() for cls in RENDERERS]


@hookimpl
def mmneurons_commands():
    from mmneurons.plugins.ui.command import app_command

    return [app_command]
