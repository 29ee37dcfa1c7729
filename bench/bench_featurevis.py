"""Units per minute: Lucent's ``render_vis`` one unit at a time against our batched visualizer,
same model, steps, image size and units (16 channels of the last block).

    uv run python bench/bench_featurevis.py [--models demo,rn50x4] [--units 16] [--steps-rn50x4 16] [--steps-demo 64]
        [--device cpu|cuda] [--defaults-only] [--turn N]

Lucent runs on a deep copy of the model (it leaves a hook on every module) with preprocess=False
and our normalization in front, ``fixed_image_size`` = the model's input size, its default
transforms, Adam lr 0.05 for both. Reported with each: the mean activation reached.

The methods take turns, one batch of units at a time (Lucent renders the batch's units one by
one, each of our settings renders the batch; who goes first alternates), so a slow spell of a
shared machine falls on all of them alike instead of on whichever ran then. Every method first
renders one unit for 2 steps untimed (our kept render tower is built then; its seconds are printed),
and on CUDA each clock stops after ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time

import torch
from torch import nn

from mmneurons.models import load_model
from mmneurons.plugins.lucent_vis import ChannelVisualizer, resolve_precision
from mmneurons.units import Unit


class Normalized(nn.Module):
    """What Lucent needs: pixels in, and our model's own normalization inside."""

    def __init__(self, model):
        super().__init__()
        self.visual = model.visual
        self.register_buffer("mean", torch.tensor(model.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(model.std).view(1, 3, 1, 1))

    def forward(self, x):
        return self.visual((x - self.mean) / self.std)


def lucent_units(model, units, steps):
    from lucent.optvis import objectives, param, render

    from mmneurons.activations import capture_layers

    net = Normalized(copy.deepcopy(model)).to(model.device).eval()
    reached = []
    start = time.perf_counter()
    for unit in units:
        layer = "visual_" + unit.layer.replace(".", "_")
        images = render.render_vis(
            net, objectives.channel(layer, unit.channel), lambda: param.image(model.image_size),
            optimizer=lambda p: torch.optim.Adam(p, lr=0.05), thresholds=(steps,), preprocess=False,
            progress=False, show_image=False, fixed_image_size=model.image_size)
        x = torch.from_numpy(images[-1]).permute(0, 3, 1, 2).float().to(model.device)
        with torch.no_grad():
            reached.append(float(unit.read(capture_layers(model, x, [unit.layer])[unit.layer])[0]))
    return finished(model, start), reached


def finished(model, start):
    """Seconds since ``start``, counted once the GPU's queued work is done."""
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return time.perf_counter() - start


def ours(model, units, steps, precision, batch_size):
    start = time.perf_counter()
    results = ChannelVisualizer().visualize(model, units, {"steps": steps, "lr": 0.05, "batch_size": batch_size,
                                                           "precision": precision, "thresholds": str(steps)})
    return finished(model, start), [r.activation for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,rn50x4")
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--steps-rn50x4", type=int, default=16)
    parser.add_argument("--steps-demo", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--defaults-only", action="store_true", help="compare Lucent with our defaults only")
    parser.add_argument("--turn", type=int, default=0,
                        help="units per turn of the methods (default: the largest batch size compared)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"{platform.machine()}, device {args.device}")
    print("| model | input | units | steps | method | seconds | units / minute | speed-up vs Lucent "
          "| mean activation reached |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        if name == "rn50x4":
            model = load_model("openclip:RN50x4@random", device=args.device)
            layer, steps = "layer4.5", args.steps_rn50x4
        else:
            model, layer, steps = load_model("demo:shapes", device=args.device), "layer4.0", args.steps_demo
        units = [Unit(layer, c) for c in range(0, 16 * args.units, 16)[: args.units]]
        auto_batch = ChannelVisualizer().batch_size({"batch_size": 0}, model)
        auto = f"batch {auto_batch}, {resolve_precision(model, 'auto')}"
        methods = {"Lucent render_vis, one unit at a time": lambda part: lucent_units(model, part, steps),
                   f"mmneurons channel, defaults ({auto})": lambda part: ours(model, part, steps, "auto", 0)}
        batches = [auto_batch]
        if not args.defaults_only:
            for precision, batch in (("fp32", 4), ("bf16", 16)):
                methods[f"mmneurons channel, batch {batch}, {precision}"] = (
                    lambda part, p=precision, b=batch: ours(model, part, steps, p, b))
                batches.append(batch)
        turn = args.turn or max(batches)  # every setting renders whole batches of its own size
        # paid once per model and process, before the clock runs: on CUDA the context, kernel choice and
        # allocator; everywhere our kept render tower (its build is printed: a start-up cost)
        lucent_units(model, units[:1], 2)
        for precision in ("fp32", "bf16"):
            seconds, _ = ours(model, units[:1], 2, precision, 0)
            print(f"warm-up: our render tower in {precision} and 2 steps of one unit: {seconds:.1f} s", flush=True)
        totals = {name: [0.0, []] for name in methods}
        for number, start in enumerate(range(0, len(units), turn)):
            order = list(methods.items())
            for name, run in order if number % 2 == 0 else order[::-1]:  # who goes first alternates
                seconds, reached = run(units[start:start + turn])
                totals[name][0] += seconds
                totals[name][1] += reached
        base = totals["Lucent render_vis, one unit at a time"][0]
        for method, (seconds, reached) in totals.items():
            print(f"| {model.model_id} | {model.image_size}px | {len(units)} | {steps} | {method} | {seconds:.1f} | "
                  f"{60 * len(units) / seconds:.1f} | {base / seconds:.2f}x | {sum(reached) / len(reached):.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
