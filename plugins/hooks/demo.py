"""The embedded demo model: its provider, the ``demo_shapes`` source and ``mmneurons demo``."""

from mmneurons.hookspecs import hookimpl


@hookimpl
def mmneurons_model_providers():
    from mmneurons.plugins.demo.plugin import DemoProvider

    return [DemoProvider()]


@hookimpl
def mmneurons_image_sources():
    from mmneurons.plugins.demo.plugin import DemoShapesSource

    return [DemoShapesSource()]


@hookimpl
def mmneurons_commands():
    from mmneurons.plugins.demo.commands import demo_cli

    return [demo_cli]
