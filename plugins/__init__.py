"""Built-in plugins, registered through exactly the same path as third-party ones.

The core never imports these modules by name: it reads ``DEFAULT_PLUGINS`` and registers each
module with the plugin manager, isolating failures as it does for entry points.
"""

DEFAULT_PLUGINS = (
    "mmneurons.plugins.openclip_models",
    "mmneurons.plugins.image_sources",
)
