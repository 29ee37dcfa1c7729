"""The built-in plugins' hook implementations, one module per plugin (``DEFAULT_PLUGINS``).

Each imports its implementation only when a hook is called, so loading the plugins, listing them
(``mmneurons plugins``) and listing their commands (``mmneurons --help``) import no torch. Third-party
plugins are registered the same way and gain the same by doing the same.
"""
