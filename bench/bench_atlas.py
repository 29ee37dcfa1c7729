"""Time per stage of an atlas build, and page loads from the atlas.

    uv run python bench/bench_atlas.py demo [--atlas DIR]
        the embedded model's whole layer4.0 (512 units) with the build's defaults: 256-step
        visualizations, examples from demo_shapes, 10,000 rendered words, labels, modality
    uv run python bench/bench_atlas.py quick
        the quick atlas the app builds on first start (the demo provider's recipe)
    uv run python bench/bench_atlas.py pages --atlas DIR
        seconds to draw the Neuron, Layer and Search pages from that (demo) atlas, under AppTest
    uv run python bench/bench_atlas.py rn50x4 [--images 64] [--units 8] [--steps 16] [--device cpu]
        RN50x4 (random weights) layer4.5: each stage timed on a small input and projected to units
        per hour and to the whole 2,560-unit layer (visualizations at 512 steps)

Every row names the CPU (``lscpu``) or GPU it ran on.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from mmneurons.atlas import Atlas, BuildOptions, build_atlas
from mmneurons.models import load_model
from mmneurons.registry import get_registry


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")
    return f"{name}, {os.cpu_count()} cores"


class StageClock:
    """A ``stage_progress`` that adds up the seconds spent inside each stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        stage = name.split(":")[0]
        start = time.perf_counter()
        try:
            yield lambda done, total, message="": None
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def page_loads(folder: Path, layer: str) -> dict[str, float]:
    """Seconds to read what the app's pages read: a unit, a layer table, a search."""
    times = {}
    with Atlas.open(folder) as book:
        start = time.perf_counter()
        book.unit(f"{layer}:17")
        times["unit"] = time.perf_counter() - start
        start = time.perf_counter()
        book.layer(layer).table()
        times["layer table"] = time.perf_counter() - start
        start = time.perf_counter()
        book.search("star")
        times["search"] = time.perf_counter() - start
    return times


def demo(args) -> None:
    registry = get_registry()
    model = load_model("demo:shapes", device=args.device)
    source = registry.get("mmneurons_image_sources", "demo_shapes").create()
    folder = Path(args.atlas or tempfile.mkdtemp(prefix="atlas-bench-"))
    clock = StageClock()
    start = time.perf_counter()
    build_atlas(model, folder, source, source.describe(), BuildOptions(layers=["layer4.0"]), registry=registry,
                stage_progress=clock)
    total = time.perf_counter() - start
    print(f"demo:shapes layer4.0, 512 units, {len(source)} images; {machine(args.device)}; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    print("| stage | seconds |\n|---|---|")
    for stage, seconds in clock.seconds.items():
        print(f"| {stage} | {seconds:.1f} |")
    print(f"| whole build | {total:.1f} |")
    for what, seconds in page_loads(folder, "layer4.0").items():
        print(f"read {what}: {seconds * 1000:.1f} ms")
    print(f"atlas in {folder}")


def quick(args) -> None:
    """The quick atlas the app builds on its first start: the demo provider's recipe, as the app runs it."""
    registry = get_registry()
    model = load_model("demo:shapes", device=args.device)
    recipe = model.meta["atlas"]
    source = registry.get("mmneurons_image_sources", recipe["source"]).create(**recipe.get("source_params", {}))
    options = BuildOptions(layers=list(recipe["layers"]), k=recipe.get("k", 8), vis_params=recipe["vis_params"],
                           probe_params=recipe.get("probe_params", {}), vis_batch=recipe.get("vis_batch", 64))
    clock = StageClock()
    start = time.perf_counter()
    build_atlas(model, tempfile.mkdtemp(prefix="atlas-quick-"), source, source.describe(), options,
                registry=registry, stage_progress=clock)
    total = time.perf_counter() - start
    print(f"quick atlas of demo:shapes {recipe['layers']} ({recipe['vis_params']}); {machine(args.device)}")
    print("| stage | seconds |\n|---|---|")
    for stage, seconds in clock.seconds.items():
        print(f"| {stage} | {seconds:.1f} |")
    print(f"| whole build | {total:.1f} |")


def rn50x4(args) -> None:
    registry = get_registry()
    model = load_model("openclip:RN50x4@random", device=args.device)
    layer, channels = "layer4.5", model.layer_info("layer4.5").channels
    folder = Path(tempfile.mkdtemp(prefix="atlas-bench-rn50x4-"))
    words = max(args.images, 64)
    source = registry.get("mmneurons_image_sources", "demo_shapes").create(per_cell=max(1, args.images // 36),
                                                                           size=288)
    clock = StageClock()
    options = BuildOptions(layers=[layer], stages=["examples", "modality", "neuron_label", "rendered_words"],
                           batch_size=args.batch_size,
                           probe_params={"rendered_words": {"n_words": words, "batch_size": args.batch_size},
                                         "neuron_label": {"n_words": 1000, "batch_size": args.batch_size},
                                         "modality": {"batch_size": args.batch_size}})
    build_atlas(model, folder, source, source.describe(), options, registry=registry, stage_progress=clock)
    visualizer = registry.get("mmneurons_visualizers", "channel")
    units = [f"{layer}:{c}" for c in range(args.units)]
    visualizer.visualize(model, units[:1], {"steps": 2})  # warm-up: kernels, packing
    start = time.perf_counter()
    visualizer.visualize(model, units, {"steps": args.steps})
    vis_seconds = time.perf_counter() - start
    print(f"RN50x4 (random weights) {layer}, {channels} units; {machine(args.device)}; torch {torch.__version__}")
    print("| stage | measured on | seconds | units per hour | projected: whole layer |\n|---|---|---|---|---|")
    for stage, seconds in clock.seconds.items():
        size = {"rendered_words": f"{words} words", "neuron_label": f"{len(source)} images, 1000 words"}.get(
            stage, f"{len(source)} images")
        # a whole-layer pass: every unit at once, so its time is per image (or word), not per unit
        print(f"| {stage} | {size} | {seconds:.1f} | {channels / seconds * 3600:.0f} | {seconds:.0f} s |")
    per_unit_512 = vis_seconds / len(units) * 512 / args.steps
    print(f"| vis | {len(units)} units x {args.steps} steps | {vis_seconds:.1f} | {3600 / per_unit_512:.1f} "
          f"(at 512 steps) | {per_unit_512 * channels / 3600:.1f} h (2,560 units x 512 steps) |")


def pages(args) -> None:
    """Seconds to draw each page from the atlas under AppTest (the model already loaded)."""
    from streamlit.testing.v1 import AppTest

    from mmneurons.plugins.ui import app as router

    os.environ["MMNEURONS_ATLAS"] = str(Path(args.atlas).resolve())
    root = Path(__file__).resolve().parents[1]
    at = AppTest.from_file(str(root / "streamlit_app.py"), default_timeout=600)
    at.query_params.update({"model": "demo:shapes", "layer": "layer4.0", "unit": "489", "q": "star"})
    at.run()
    print(f"pages from {args.atlas}; {machine('cpu')}")
    print("| page | seconds (median of 5) |\n|---|---|")
    for slug in ("neuron", "layer", "search"):
        at.switch_page(str(router.page_file(slug))).run()  # first draw: imports, widgets
        times = []
        for _ in range(5):
            start = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - start)
        assert not at.exception, [e.value for e in at.exception]
        print(f"| {slug} | {sorted(times)[2]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=("demo", "quick", "rn50x4", "pages"))
    parser.add_argument("--atlas", default=None, help="where the demo atlas goes (default: a temporary folder)")
    parser.add_argument("--images", type=int, default=72)
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    {"demo": demo, "quick": quick, "rn50x4": rn50x4, "pages": pages}[args.model](args)


if __name__ == "__main__":
    main()
