"""The Streamlit front end: a Microscope for any CLIP, composed from whatever plugins are registered.

Streamlit lives here and nowhere in ``mmneurons`` core. ``app.py`` is the router, ``views/`` holds
one file per page, and the other modules are the generic parts every page shares: the result cache
(``cache``), downloads (``downloads``), parameter widgets and pickers (``widgets``), the panel that
runs any plugin with progress and error isolation (``panels``) and the session-wide state
(``state``). ``plugin`` is the built-in "app" plugin: the result renderers and ``mmneurons app``.
"""

from pathlib import Path

#: the router script that ``streamlit run`` executes (``streamlit_app.py`` at the repository root calls the same main)
APP_SCRIPT = Path(__file__).with_name("app.py")
