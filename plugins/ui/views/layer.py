"""Layer: every unit of a layer in a grid, sortable by what the layer probes found (multimodality
score, label, best word, ...); "Open" shows a unit on the Neuron page."""

import streamlit as st

from mmneurons.plugins.ui import atlas_panels, grid, panels, state, widgets
from mmneurons.plugins.ui.units_table import merge_unit_rows, sort_rows, sortable_columns

st.title("Layer")
model = widgets.model_picker()
if model is None:
    st.stop()
atlas_panels.ensure_own_atlas(model)
layer = widgets.layer_picker(model, prefer=atlas_panels.atlas_layers(model))
source, source_key = widgets.source_picker()
channels = model.layer_info(layer).channels
st.subheader(f"{layer}: {channels} units")
book = atlas_panels.atlas_for(model, layer)
if book is not None:
    atlas_panels.layer_panel(model, book, layer)
    book.close()
    st.markdown("### Recompute")
    st.caption("Run the analyses of the whole layer again, with other parameters or another image source.")

probes = [p for p in panels.usable(state.registry().probes(), model) if p.accepts("layer")]
names = [p.name for p in probes]
chosen = st.multiselect("Analyses of the whole layer", names, key="layer.probes",
                        default=([n for n in ("modality", "rendered_words") if n in names] or names[:1])
                        if book is None else [])
results = {}
selected = [probes[names.index(n)] for n in chosen]
for tab, probe in zip(st.tabs([p.name for p in selected]) if selected else [], selected):
    with tab:
        result = panels.probe_panel(probe, model, layer, source, source_key, key=f"layer.probe.{probe.name}",
                                    defaults=widgets.context_defaults(probe, source, top=channels))
        if result is not None:
            results[probe.name] = result

if book is not None and not results:
    st.stop()  # the atlas's units are above; a grid of computed results comes once an analysis ran
st.markdown("#### Units")
rows = merge_unit_rows(results, [f"{layer}:{c}" for c in range(channels)])
columns = sortable_columns(rows)
left, middle, right = st.columns([2, 1, 2])
# keyed by the columns on offer, so the first real column becomes the default once an analysis ran
numeric = [c for c in columns
           if any(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) for r in rows)]
order_by = left.selectbox("Sort by", ["unit"] + columns, index=1 + columns.index(numeric[0]) if numeric else 0,
                          key="layer.sort." + ",".join(columns),
                          help="columns come from the analyses above")
descending = middle.toggle("descending", value=True, key="layer.descending")
shown = right.slider("Units shown", 1, channels, min(24, channels), key="layer.shown")
rows = sort_rows(rows, None if order_by == "unit" else order_by, descending)[:shown]
thumbs = grid.thumbnail_controls(model, [r["unit"] for r in rows], key="layer.thumbs")
grid.unit_cards(model, rows, thumbs, key="layer.cards")
