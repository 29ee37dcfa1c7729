"""The built-in result panels: one renderer per result kind, registered by the ``app`` plugin.

Renderers receive the streamlit module as an argument, so importing this module does not import
Streamlit (the CLI stays fast); a third-party plugin can add a renderer for its own result kind
the same way, or for one probe's results with ``result_kind = "probe:<probe name>"``. The app
shows a result's ``warnings`` itself, above the renderer's panel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmneurons.kinds import Renderer
from mmneurons.results import UNIT_COLUMN

from .format import SHOW_WIDTH, enlarge, fmt


def image_grid(st: Any, images: list, captions: list[str], columns: int = 6) -> None:
    for start in range(0, len(images), columns):
        cols = st.columns(columns)
        for col, image, caption in zip(cols, images[start:start + columns], captions[start:start + columns]):
            col.image(enlarge(image), caption=caption, width="stretch")


def summary_metrics(st: Any, summary: dict, per_row: int = 4) -> None:
    """Scalars of a summary as metrics; lists and dicts as a compact JSON block."""
    scalars = [(k, v) for k, v in summary.items() if isinstance(v, (str, int, float, bool, np.integer, np.floating))]
    for start in range(0, len(scalars), per_row):
        for col, (k, v) in zip(st.columns(per_row), scalars[start:start + per_row]):
            col.metric(k.replace("_", " "), fmt(v))
    rest = {k: v for k, v in summary.items() if (k, v) not in scalars}
    if rest:
        st.json(rest, expanded=False)


class ProbeRenderer(Renderer):
    name = "probe"
    result_kind = "probe"
    description = "Any probe result: summary metrics, warnings, images with captions, tables."

    def render(self, result: Any, st: Any) -> None:
        summary_metrics(st, result.summary)
        if result.images:
            image_grid(st, result.images, result.captions or [""] * len(result.images),
                       columns=min(6, max(2, len(result.images))))
        for name, rows in result.tables.items():
            st.markdown(f"**{name}** ({len(rows)} rows)")
            st.dataframe(rows, hide_index=True, width="stretch")


class FeatureVisRenderer(Renderer):
    name = "feature_vis"
    result_kind = "feature_vis"
    description = "A feature visualization with its snapshots and the activation it reached (vs gray and noise)."

    def render(self, result: Any, st: Any) -> None:
        st.image(enlarge(result.image), caption=result.target, width=SHOW_WIDTH)
        st.caption(f"activation {fmt(result.activation)} · gray {fmt(result.activation_gray)} · "
                   f"noise {fmt(result.activation_noise)}")
        if len(result.snapshots) > 1:
            with st.expander("snapshots"):
                image_grid(st, result.snapshots, [f"step {t}" for t in result.thresholds],
                           columns=len(result.snapshots))


class AttributionMapRenderer(Renderer):
    name = "attribution_map"
    result_kind = "attribution_map"
    description = "An input image next to its attribution heatmap overlay."

    def render(self, result: Any, st: Any) -> None:
        left, right = st.columns(2)
        left.image(enlarge(result.image, 256), caption=result.image_id, width="stretch")
        right.image(enlarge(result.overlay, 256), caption=f"{result.method}: {result.target}", width="stretch")
        facts = {"target value": result.target_value, "baseline value": result.baseline_value,
                 "convergence delta": result.convergence_delta}
        st.caption(" · ".join(f"{k} {fmt(v)}" for k, v in facts.items() if v is not None))


class UnitContributionsRenderer(Renderer):
    name = "unit_contributions"
    result_kind = "unit_contributions"
    description = "Units of a layer ranked by their share of a class or prompt logit."

    def render(self, result: Any, st: Any) -> None:
        summary_metrics(st, {"layer": result.layer, "target": result.target, "sum over units": result.total,
                             "f(x) - f(baseline)": result.target_minus_baseline, "images": result.images})
        rows = result.table(20)
        st.bar_chart({row[UNIT_COLUMN]: row["contribution"] for row in rows}, horizontal=True, sort=False)
        st.dataframe(rows, hide_index=True, width="stretch")


RENDERERS = (ProbeRenderer, FeatureVisRenderer, AttributionMapRenderer, UnitContributionsRenderer)
