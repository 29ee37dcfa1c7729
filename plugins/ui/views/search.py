"""Search: zero-shot neuron search from a text prompt (URL: ?q=), the ranked units with
thumbnails, and what the prompt's own direction looks like."""

import streamlit as st

from mmneurons.plugins.ui import atlas_panels, grid, panels, state, widgets
from mmneurons.plugins.ui.units_table import unit_rows

st.title("Search")
model = widgets.model_picker()
if model is None:
    st.stop()
atlas_panels.ensure_own_atlas(model)
registry = state.registry()
if "search.q" not in st.session_state:
    st.session_state["search.q"] = state.remembered("q", "")
prompt = st.text_input("Find units for", key="search.q", placeholder="a text prompt, e.g. a star",
                       help="units ranked by how much they raise the prompt's image-text logit").strip()
state.remember("q", prompt or None)
if not prompt:
    st.info("Type a prompt to search the model's units.")
    st.stop()

book = atlas_panels.atlas_for(model, None)
if book is not None:
    atlas_panels.search_panel(model, book, prompt)
    book.close()
    st.markdown("#### Zero-shot neuron search")

probes = [p for p in panels.usable(registry.probes(), model) if p.accepts("text") and p.source != "images"]
if not probes:
    st.warning("No search probe is installed (a probe that takes a text and no images).")
    st.stop()
names = [p.name for p in probes]
name = st.selectbox("Search with", names, index=names.index("neuron_search") if "neuron_search" in names else 0,
                    key="search.probe")
probe = probes[names.index(name)]
result = panels.plugin_panel(probe, model, prompt, lambda params, progress: probe.run(model, prompt, None, params,
                                                                                      progress),
                             key=f"search.{name}", run_label="Search with", auto=True)  # ?q= searches
if result is not None:
    rows = unit_rows(result)
    if rows:
        st.markdown("#### Ranked units")
        shown = rows[: st.slider("Units shown", 1, len(rows), min(12, len(rows)), key="search.shown")]
        thumbs = grid.thumbnail_controls(model, [r["unit"] for r in shown], key="search.thumbs")
        grid.unit_cards(model, shown, thumbs, key="search.cards")

visualizers = [v for v in panels.usable(registry.visualizers(), model) if v.accepts("text")]
if visualizers:
    st.markdown("#### What the prompt looks like to the model")
    for tab, vis in zip(st.tabs([v.name for v in visualizers]), visualizers):
        with tab:
            panels.plugin_panel(vis, model, prompt, lambda params, progress, vis=vis: vis.visualize(
                model, [prompt], params, progress), key=f"search.vis.{vis.name}", run_label="Render")
