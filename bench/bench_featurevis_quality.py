"""Can you recognize a unit's concept in its feature visualization? Each render candidate (a
parameterization, transform set, objective or step count) renders the same units of demo:shapes'
layer4.0, and an independent judge (bench/shape_judge.py: a shape classifier that never saw the
demo's training images nor a render) names each render's concept.

    uv run python bench/bench_featurevis_quality.py [--candidates default,maco,...] [--random 31]
        [--steps 512] [--seed 0] [--json out.json]

Units: the manifest's multimodal units (their concept is the manifest's) and as many random other
units of the layer (their concept: the one whose probe images drive them most, over all forms).
Reported per candidate and unit set: the rate at which the render is named as the unit's concept;
the baseline, the same rate with the concepts shuffled among the set's units (its exact expectation
over all shuffles), so a judge that favours "star" does not count; the activation reached as a
multiple of the unit's largest value on the probe images; the mean path score of the sanity check
(mmneurons.analysis.render_check) and the seconds of rendering.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import shape_judge  # noqa: E402
from bench_scan import cpu_name  # noqa: E402

from mmneurons.analysis.render_check import PathBaseline, path_layers  # noqa: E402
from mmneurons.models import load_model  # noqa: E402
from mmneurons.plugins.demo.data import CONCEPTS, ShapesSource, probe_specs  # noqa: E402
from mmneurons.registry import get_registry  # noqa: E402

LAYER = "layer4.0"
#: the paper's settings (the channel visualizer's defaults before issue 22), which candidates change
PAPER = {"parameterization": "fft", "decay": 1.0, "transforms": "clip", "window": False}
#: name -> (visualizer, parameters besides steps and seed)
CANDIDATES: dict[str, tuple[str, dict]] = {
    "paper (former default)": ("channel", PAPER),
    "no transforms": ("channel", {**PAPER, "transforms": "none"}),
    "strong transforms": ("channel", {**PAPER, "transforms": "strong"}),
    "paper image penalty": ("channel", {**PAPER, "image_penalty": 10.0}),
    "maco": ("channel", {**PAPER, "parameterization": "maco"}),
    "maco lr 0.1": ("channel", {**PAPER, "parameterization": "maco", "lr": 0.1}),
    "maco decay 2": ("channel", {**PAPER, "parameterization": "maco", "decay": 2.0, "lr": 0.1}),
    "window": ("channel", {**PAPER, "window": True}),
    "window + strong": ("channel", {**PAPER, "window": True, "transforms": "strong"}),
    "maco + window": ("channel", {**PAPER, "parameterization": "maco", "lr": 0.1, "window": True}),
    "decay 2 (blur prior)": ("channel", {**PAPER, "decay": 2.0}),
    "decay 2 + window": ("channel", {**PAPER, "decay": 2.0, "window": True}),
    "decay 2 + window + strong": ("channel", {**PAPER, "decay": 2.0, "window": True, "transforms": "strong"}),
    "maco lr 0.1 + window + strong": ("channel", {**PAPER, "parameterization": "maco", "lr": 0.1, "window": True,
                                                  "transforms": "strong"}),
    "maco decay 2 + window + strong": ("channel", {**PAPER, "parameterization": "maco", "decay": 2.0, "lr": 0.1,
                                                   "window": True, "transforms": "strong"}),
    "window + strong 2x steps": ("channel", {**PAPER, "window": True, "transforms": "strong", "__steps": 2}),
    "neuron (center)": ("neuron", PAPER),
    "paper 2x steps": ("channel", {**PAPER, "__steps": 2}),
    "defaults": ("channel", {}),
}


def pixels_of(source, indices) -> torch.Tensor:
    arrays = [np.asarray(source.load(i).convert("RGB"), np.float32) / 255 for i in indices]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def units_and_concepts(model, probe: torch.Tensor, probe_concepts: np.ndarray, n_random: int, seed: int):
    """The multimodal units with the manifest's concepts, then ``n_random`` other units with the
    concept that drives each most; and every unit's largest value on the probe images."""
    from mmneurons.activations import capture_layers

    with torch.inference_mode():
        acts = torch.cat([capture_layers(model, probe[i:i + 256], [LAYER])[LAYER].mean(dim=(2, 3))
                          for i in range(0, len(probe), 256)]).numpy()
    multimodal = [(int(c), k) for c, k in model.meta["evaluation"]["multimodal"]["units"]]
    taken = {c for c, _ in multimodal}
    rng = np.random.default_rng(seed)
    others = [int(c) for c in rng.permutation(acts.shape[1]) if int(c) not in taken][:n_random]
    means = np.stack([acts[probe_concepts == i].mean(axis=0) for i in range(len(CONCEPTS))])
    random_units = [(c, CONCEPTS[int(means[:, c].argmax())]) for c in others]
    return multimodal, random_units, acts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated names of CANDIDATES")
    ap.add_argument("--random", type=int, default=31, help="random non-multimodal units")
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="")
    ap.add_argument("--save", default="", help="folder to save every render into")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"CPU: {cpu_name()}; torch {torch.__version__}; threads {torch.get_num_threads()}", flush=True)

    judge = shape_judge.load()
    accuracy = shape_judge.held_out_accuracy(judge)
    print("judge held-out accuracy:", json.dumps({k: round(v, 3) for k, v in accuracy.items()}), flush=True)

    model = load_model("demo:shapes")
    probe_source = ShapesSource(probe_specs(20, 4242))
    probe = pixels_of(probe_source, range(len(probe_source)))
    probe_concepts = np.array([CONCEPTS.index(probe_source.record(i).category) for i in range(len(probe_source))])
    multimodal, random_units, acts = units_and_concepts(model, probe, probe_concepts, args.random, args.seed)
    sets = {"multimodal": multimodal, "random": random_units}
    units = multimodal + random_units
    top = {c: torch.from_numpy(np.argsort(-acts[:, c])[:9].copy()) for c, _ in units}
    reference = probe[torch.from_numpy(np.random.default_rng(1).choice(len(probe), 96, replace=False))]
    baseline = PathBaseline(model, reference, path_layers(model, LAYER))
    registry = get_registry()
    rows = []
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        ap.error(f"unknown candidate(s) {', '.join(map(repr, unknown))}; candidates: {', '.join(CANDIDATES)}")
    for name in names:
        visualizer, params = CANDIDATES[name]
        params = dict(params)
        steps = args.steps * params.pop("__steps", 1)
        t0 = time.perf_counter()
        renders = registry.get("mmneurons_visualizers", visualizer).visualize(
            model, [f"{LAYER}:{c}" for c, _ in units], {"steps": steps, "seed": args.seed, **params})
        seconds = time.perf_counter() - t0
        images = torch.from_numpy(np.stack([np.asarray(r.image.convert("RGB"), np.float32) / 255
                                            for r in renders])).permute(0, 3, 1, 2)
        named = shape_judge.probabilities(judge, images).argmax(1).numpy()
        if args.save:
            folder = Path(args.save) / name.replace(" ", "_").replace(",", "")
            folder.mkdir(parents=True, exist_ok=True)
            for (c, concept), r, n in zip(units, renders, named):
                r.image.save(folder / f"{c:03d}-{concept}-judged-{CONCEPTS[n]}.png")
        paths = [baseline.scores(model, images[i:i + 1], probe[top[c]])[0].score for i, (c, _) in enumerate(units)]
        row = {"candidate": name, "visualizer": visualizer, "params": params, "steps": steps,
               "seconds": round(seconds, 1)}
        start = 0
        for set_name, members in sets.items():
            idx = slice(start, start + len(members))
            start += len(members)
            truth = np.array([CONCEPTS.index(k) for _, k in members])
            mine = named[idx]
            reached = [renders[i].activation / max(acts[:, c].max(), 1e-8)
                       for i, (c, _) in zip(range(idx.start, idx.stop), members)]
            row[set_name] = {
                "rate": float((mine == truth).mean()),
                "baseline": float((mine[:, None] == truth[None, :]).mean()),
                "activation_x_top": float(np.median(reached)),
                "path_score": float(np.mean(paths[idx])),
                "named": {CONCEPTS[i]: int((mine == i).sum()) for i in np.unique(mine)},
            }
        rows.append(row)
        mm, rnd = row["multimodal"], row["random"]
        print(f"| {name} | {mm['rate']:.0%} | {mm['baseline']:.0%} | {rnd['rate']:.0%} | {rnd['baseline']:.0%} | "
              f"{mm['activation_x_top']:.2f} | {mm['path_score']:.2f} / {rnd['path_score']:.2f} | {seconds:.0f} |"
              f"  named: {mm['named']}", flush=True)
        if args.json:  # after every row: a long run stopped early keeps what it measured
            Path(args.json).write_text(json.dumps({"cpu": cpu_name(), "judge_accuracy": accuracy, "rows": rows,
                                                   "multimodal": multimodal, "random": random_units}, indent=1))


if __name__ == "__main__":
    main()
