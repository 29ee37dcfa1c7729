"""Built-in plugins, registered through exactly the same path as third-party ones.

The core never imports these modules by name: it reads ``DEFAULT_PLUGINS`` (plugin name ->
module) and registers each module with the plugin manager, isolating failures as it does for
entry points. ``MMNEURONS_DISABLE_PLUGINS`` takes these names.
"""

DEFAULT_PLUGINS = {
    "openclip_models": "mmneurons.plugins.openclip_models",
    "image_sources": "mmneurons.plugins.image_sources",
    "demo": "mmneurons.plugins.demo.plugin",
    "captum_attr": "mmneurons.plugins.captum_attr",
    "lucent_vis": "mmneurons.plugins.lucent_vis",
    "probes": "mmneurons.plugins.probes",
    "app": "mmneurons.plugins.ui.plugin",
}
