"""Seconds per Integrated Gradients attribution (50 steps) and peak memory, for several
``internal_batch_size`` values. Each setting runs in a fresh process so its peak RSS is its own.

    uv run python bench/bench_attribution.py [--model openclip:RN50x4@random] [--batch-sizes none,10,25]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(model_id: str, internal: int | None, steps: int, device: str, repeats: int) -> dict:
    import torch
    from captum.attr import IntegratedGradients

    from mmneurons.captum import ZeroShotForward
    from mmneurons.models import load_model

    model = load_model(model_id, device=device)
    forward = ZeroShotForward(model, ["a dog", "a cat", "a car"])
    x = torch.rand(1, 3, model.image_size, model.image_size, device=model.device)
    ig = IntegratedGradients(forward)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _, delta = ig.attribute(x, baselines=x * 0, target=0, n_steps=steps, internal_batch_size=internal,
                                return_convergence_delta=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"seconds": min(times), "peak_mib": peak, "delta": float(delta)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="openclip:RN50x4@random")
    parser.add_argument("--batch-sizes", default="none,10,25")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        internal = None if args.one == "none" else int(args.one)
        print(json.dumps(one(args.model, internal, args.steps, args.device, args.repeats)))
        return
    memory = "GPU" if args.device != "cpu" else "process RSS"
    print(f"| model | device | IG steps | internal_batch_size | seconds / attribution | peak memory (MiB, {memory}) "
          f"| convergence delta |")
    print("|---|---|---|---|---|---|---|")
    for size in args.batch_sizes.split(","):
        out = subprocess.run([sys.executable, __file__, "--model", args.model, "--steps", str(args.steps),
                              "--repeats", str(args.repeats), "--device", args.device, "--one", size],
                             capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {args.model} | {args.device} | {args.steps} | {size} | {row['seconds']:.1f} "
              f"| {row['peak_mib']:.0f} | "
              f"{row['delta']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
