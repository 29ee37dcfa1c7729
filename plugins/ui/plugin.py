"""The built-in "app" plugin: the panels that draw each result kind, and ``mmneurons app``.

The app shows a result's ``warnings`` itself, above the renderer's panel.

Registered through ``DEFAULT_PLUGINS`` like any third-party plugin. Renderers receive the
streamlit module as an argument, so importing this module does not import Streamlit (the CLI
stays fast); a third-party plugin can add a renderer for its own result kind the same way, or
for one probe's results with ``result_kind = "probe:<probe name>"``.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from mmneurons.kinds import Renderer

#: thumbnails are drawn at least this wide; small images are enlarged without smoothing
SHOW_WIDTH = 192


def enlarge(image: Any, width: int = SHOW_WIDTH) -> Any:
    """``image`` scaled up by a whole factor (nearest neighbour) so a 64 px demo image stays crisp."""
    from PIL import Image

    factor = max(1, width // max(1, image.width))
    return image if factor == 1 else image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def fmt(value: Any) -> str:
    """A number for people: 4 significant digits, NaN spelled out."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return "n/a" if math.isnan(value) else f"{float(value):.4g}"


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
                image_grid(st, result.snapshots, [f"step {t}" for t in result.thresholds], columns=len(result.snapshots))


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
        st.bar_chart({row["unit"]: row["contribution"] for row in rows}, horizontal=True, sort=False)
        st.dataframe(rows, hide_index=True, width="stretch")


RENDERERS = (ProbeRenderer, FeatureVisRenderer, AttributionMapRenderer, UnitContributionsRenderer)


@click.command("app")
@click.option("--model", default=None, help="Model shown first (default: the embedded demo:shapes).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on (loopback by default).")
@click.option("--port", type=int, default=8501, show_default=True)
@click.option("--max-upload-mb", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Largest image a user may upload.")
@click.option("--headless/--browser", default=False, help="Do not open a browser window.")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A folder visitors may read images and word lists from (repeatable). Served beyond "
                   "loopback (--host), the app reads files only under these folders: none without --data.")
@click.option("--allow-model", "allow_models", multiple=True,
              help="A model id visitors may load (repeatable). Served beyond loopback, only these, --model "
                   "and the embedded default are offered.")
@click.option("--run-limit", type=click.FloatRange(1), default=900, show_default=True,
              help="Seconds one run (a probe, a render) may take before the app stops it.")
@click.argument("streamlit_args", nargs=-1, type=click.UNPROCESSED)
def app_command(model, host, port, max_upload_mb, headless, data, allow_models, run_limit, streamlit_args) -> None:
    """Start the Streamlit app: a Microscope for any CLIP, composed from the registered plugins.

    Extra arguments go to `streamlit run` (e.g. -- --server.runOnSave true).
    """
    from mmneurons.access import DATA_ROOTS_ENV, MODELS_ENV, is_loopback
    from mmneurons.models import DEFAULT_MODEL_ID

    from . import APP_SCRIPT

    env = dict(os.environ, MMNEURONS_MAX_UPLOAD_MB=str(max_upload_mb), MMNEURONS_APP_RUN_LIMIT_S=str(run_limit))
    if model:
        env["MMNEURONS_DEFAULT_MODEL"] = model
    exposed = not is_loopback(host)
    if exposed or data:  # what a visitor may make the server read (mmneurons.access)
        env[DATA_ROOTS_ENV] = os.pathsep.join(str(Path(d).resolve()) for d in data)
    if exposed or allow_models:
        env[MODELS_ENV] = ",".join(dict.fromkeys([model or DEFAULT_MODEL_ID, DEFAULT_MODEL_ID, *allow_models]))
    if exposed:
        click.echo(f"serving on {host}, beyond this machine: visitors may read files under "
                   f"{', '.join(data) or 'no folder (give --data DIR)'} and load {env[MODELS_ENV]}", err=True)
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT), "--server.address", host,
           "--server.port", str(port), "--server.maxUploadSize", str(max_upload_mb),
           "--server.headless", "true" if headless else "false", "--browser.gatherUsageStats", "false",
           *streamlit_args]
    click.echo(f"mmneurons app on http://{host}:{port} (Ctrl+C stops it)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # this process becomes the server: a SIGTERM or Ctrl+C meant for `mmneurons app` reaches
    # Streamlit itself, and no orphaned child can be left serving
    os.execve(sys.executable, cmd, env)
