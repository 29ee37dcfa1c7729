"""mmneurons in the browser: `streamlit run streamlit_app.py` (or `mmneurons app`).

The router and the pages live in the installed package (``mmneurons.plugins.ui``), so the app an
installed user starts with `mmneurons app` is the same one this file starts from a checkout.
"""

from mmneurons.plugins.ui.app import main

main()
