"""A grid of units: a thumbnail (a feature visualization, rendered for all shown units in one
batched call), the unit's numbers from the merged tables, and an "open" button to the Neuron page."""

from __future__ import annotations

from typing import Any

import streamlit as st

from mmneurons.models import ClipModel

from . import state
from .cache import result_key
from .panels import run_with_progress, usable
from .format import enlarge, fmt
from .widgets import open_unit, param_widgets, resolved

#: thumbnails are quick previews: fewer steps than a full visualization
THUMBNAIL_STEPS = 128


def thumbnail_controls(model: ClipModel, units: list[str], key: str) -> dict[str, Any]:
    """A visualizer picker and button; returns unit -> thumbnail image for the units rendered so far."""
    visualizers = [v for v in usable(state.registry().visualizers(), model) if v.accepts("unit")]
    if not visualizers:
        st.caption("no feature visualization plugin is installed: no thumbnails")
        return {}
    names = [v.name for v in visualizers]
    cols = st.columns([1, 2])
    name = cols[0].selectbox("Thumbnails", names, index=names.index("channel") if "channel" in names else 0,
                             key=f"{key}.vis")
    visualizer = visualizers[names.index(name)]
    with cols[1].expander(f"{name} settings for thumbnails"):
        values = param_widgets(visualizer.params, f"{key}.vis.{name}", defaults={"steps": THUMBNAIL_STEPS})
    params = resolved(visualizer, values)
    if params is None:
        return {}
    cache = state.results()
    keys = {u: result_key(model.model_id, visualizer.kind, name, u, params) for u in units}
    missing = [u for u in units if keys[u] not in cache]
    if missing and st.button(f"Render thumbnails for {len(missing)} units", key=f"{key}.render"):
        made = run_with_progress(visualizer, lambda progress: visualizer.visualize(model, missing, params, progress),
                                 model.model_id)
        per_unit: dict[str, list] = {}
        for vis in made or []:  # diversity gives k images per unit, named unit#j: all are kept, the first shown
            per_unit.setdefault(vis.of or vis.target, []).append(vis)
        for unit, results in per_unit.items():
            if unit in keys:
                cache.put(keys[unit], results)  # the same entry the Neuron page shows for these params
        if made:
            st.rerun()  # draw the grid again with the thumbnails in place
    thumbs = {}
    for unit in units:
        hit = cache.get(keys[unit])  # a list: one image per unit, k for diversity
        if hit:
            thumbs[unit] = hit[0].image
    return thumbs


def unit_cards(model: ClipModel, rows: list[dict], thumbs: dict[str, Any], key: str, per_row: int = 6) -> None:
    """One card per row: thumbnail, unit, its other columns, and a button that opens it."""
    for start in range(0, len(rows), per_row):
        for col, row in zip(st.columns(per_row), rows[start:start + per_row]):
            unit = row["unit"]
            with col.container(border=True):
                if unit in thumbs:
                    st.image(enlarge(thumbs[unit], 128), width="stretch")
                st.markdown(f"**{unit}**")
                facts = [f"{k}: {fmt(v)}" for k, v in row.items() if k != "unit" and v is not None]
                if facts:
                    st.caption(" · ".join(facts[:4]))
                st.button("Open unit", key=f"{key}.open.{unit}", on_click=open_unit, args=(model.model_id, unit),
                          width="stretch")
