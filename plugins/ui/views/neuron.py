"""Neuron: everything the registered plugins can say about one unit (URL: ?model=&layer=&unit=)."""

import streamlit as st

from mmneurons.plugins.ui import atlas_panels, panels, state, widgets
from mmneurons.plugins.ui.path_check import path_check_panel

st.title("Neuron")
model = widgets.model_picker()
if model is None:
    st.stop()
atlas_panels.ensure_own_atlas(model)
# the first view: no unit asked for (URL or an earlier choice) and the model names one worth seeing
opening = not ({"unit", "layer"} & set(st.query_params) or {"w.unit", "mm.unit"} & set(st.session_state))
layer = widgets.layer_picker(model, prefer=atlas_panels.atlas_layers(model))
channel = widgets.unit_picker(model, layer)
source, source_key = widgets.source_picker()
unit = f"{layer}:{channel}"
book = atlas_panels.atlas_for(model, layer)
first_view = opening and model.featured_units[:1] == (unit,) and book is None  # the atlas shows it at once
featured = set(model.featured_plugins) if first_view else set()
store = state.result_store() if featured else None
st.subheader(unit)
if first_view:
    st.caption("The most multimodal unit of this model, as its provider ranks them: its "
               f"{', '.join(sorted(featured))} shown at once (computed once, then read from disk).")
st.caption(f"{model.model_id} · layer {layer} {model.layer_info(layer).shape} · the address bar holds this "
           "view (model, layer, unit): copy it to share")

if book is not None:
    atlas_panels.unit_panel(book, unit)
    book.close()
    st.markdown("### Recompute")
    st.caption("Run any plugin on this unit again, with other parameters or another image source.")

registry = state.registry()
st.markdown("#### Feature visualization")
visualizers = sorted((v for v in panels.usable(registry.visualizers(), model) if v.accepts("unit")),
                     key=lambda v: v.name not in featured)  # featured first: the tab that is open
if not visualizers:
    st.info("No feature visualization plugin is installed.")
for tab, vis in zip(st.tabs([v.name for v in visualizers]) if visualizers else [], visualizers):
    with tab:
        rendered = panels.plugin_panel(vis, model, unit, lambda params, progress, vis=vis: vis.visualize(
            model, [unit], params, progress), key=f"neuron.vis.{vis.name}", columns=4, run_label="Render",
            store=store if vis.name in featured else None)
        if rendered:
            path_check_panel(model, unit, rendered, source, source_key, key=f"neuron.vis.{vis.name}")

st.markdown("#### Probes")
probes = sorted((p for p in panels.usable(registry.probes(), model) if p.accepts("unit")),
                key=lambda p: p.name not in featured)
if not probes:
    st.info("No probe for single units is installed.")
for tab, probe in zip(st.tabs([p.name for p in probes]) if probes else [], probes):
    with tab:
        panels.probe_panel(probe, model, unit, source, source_key, key=f"neuron.probe.{probe.name}",
                           defaults=widgets.context_defaults(probe, source),
                           store=store if probe.name in featured else None)
