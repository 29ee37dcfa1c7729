"""The router: one ``st.navigation`` over the pages in ``views/``, whatever plugins are installed.

``streamlit run`` executes this file (``mmneurons app``); ``streamlit_app.py`` at the repository
root calls the same :func:`main`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).with_name("views")

#: (url path, title, icon): the first page is the default one
PAGES = (
    ("neuron", "Neuron", ":material/neurology:"),
    ("layer", "Layer", ":material/grid_view:"),
    ("search", "Search", ":material/search:"),
    ("attribution", "Attribution", ":material/local_fire_department:"),
    ("typographic", "Typographic attack", ":material/text_fields:"),
    ("associations", "Associations", ":material/hub:"),
    ("plugins", "Plugins", ":material/extension:"),
)


def page_file(url_path: str) -> Path:
    return VIEWS / f"{url_path}.py"


def main() -> None:
    st.set_page_config(page_title="mmneurons", page_icon=":material/neurology:", layout="wide")
    pages = {slug: st.Page(page_file(slug), title=title, icon=icon, url_path=slug, default=(i == 0))
             for i, (slug, title, icon) in enumerate(PAGES)}
    navigation = st.navigation(list(pages.values()))
    goto = st.session_state.pop("mm.goto", None)  # set by an "open" button on another page
    if goto in pages:
        st.switch_page(pages[goto])
    st.sidebar.caption("mmneurons: multimodal neurons in CLIP models")
    navigation.run()


if __name__ == "__main__":
    main()
