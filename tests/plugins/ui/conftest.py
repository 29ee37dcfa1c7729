"""A small atlas of the demo model, built once per session for the app's pages (AppTest and Chromium)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmneurons.atlas import BuildOptions, build_atlas
from mmneurons.registry import get_registry

#: a small atlas of the demo model (the full one is `mmneurons atlas build demo:shapes ...`)
SMALL = {"layers": ["layer4.0"], "source": "demo_shapes", "source_params": {"per_cell": 1}, "k": 3,
         "vis_params": {"steps": 2}, "vis_batch": 256, "probe_params": {"rendered_words": {"n_words": 100}}}


@pytest.fixture(scope="session")
def demo_atlas(tmp_path_factory) -> Path:
    from mmneurons.plugins.ui import state

    folder = tmp_path_factory.mktemp("demo-atlas") / "atlas"
    source = get_registry().get("mmneurons_image_sources", "demo_shapes").create(**SMALL["source_params"])
    options = BuildOptions(layers=SMALL["layers"], k=SMALL["k"], vis_params=SMALL["vis_params"],
                           vis_batch=SMALL["vis_batch"], probe_params=SMALL["probe_params"])
    build_atlas(state._load_model("demo:shapes", "auto"), folder, source, source.describe(), options)
    return folder
