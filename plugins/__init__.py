"""Built-in plugins, registered through exactly the same path as third-party ones.

The core never imports these modules by name: it reads ``DEFAULT_PLUGINS`` (plugin name ->
module) and registers each module with the plugin manager, isolating failures as it does for
entry points. ``MMNEURONS_DISABLE_PLUGINS`` takes these names. Each module (``hooks/``) holds
only hook implementations that import their implementation when called.
"""

DEFAULT_PLUGINS = {name: f"mmneurons.plugins.hooks.{name}" for name in (
    "openclip_models", "image_sources", "demo", "captum_attr", "lucent_vis", "probes", "sae", "app")}
