"""The scan's fast path and engines, measured (results in docs/benchmarks.md, with the CPU).

    uv run python bench/bench_scan.py fast [--images 64] [--bf16-images 16] [--batch-size 16]
        RN50x4 (random weights, 288 px) to layer4.5 on pre-decoded images: the plain fp32 model
        against the scan tower at fp32 and bf16 (images/s), with the top-k agreement of each
        against plain fp32 (overlap of the top-k sets, largest relative value difference).
    uv run python bench/bench_scan.py principle [--images 64]
        The whole scan (PNG files decoded by DataLoader workers, top-k kept) against the bare
        forward of the layers it needs on the same pixels, both through the scan tower at the
        auto precision, in one run: the DESIGN's "scan at the bare forward's speed".
    uv run python bench/bench_scan.py ray [--model demo] [--images 384,1536] [--actors 1,2]
        Ray engine against the local engine on one machine: Ray's start-up, the scan's wall time,
        identical top-k; with two or more image counts, each engine's time per image and fixed cost
        (a line through the shortest and the longest run: the per-image overhead without start-up).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmneurons.activations import capture_layers, scan_layers_top_k
from mmneurons.hardware import resolve_precision
from mmneurons.images import FolderSource
from mmneurons.models import load_model
from mmneurons.scan import ScanOptions, ScanTower

K = 16


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def rn50x4():
    return load_model("openclip:RN50x4@random", device="cpu")  # random weights: nothing downloaded


def pixels(n: int, size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 1, 1, generator=gen)
    return (base + 0.25 * torch.randn(n, 3, size, size, generator=gen)).clamp(0, 1)


def pooled(run, x: torch.Tensor, batch: int) -> tuple[torch.Tensor, float]:
    """[C, N] spatial means of every image and the images/s of ``run`` over ``x``."""
    out = []
    run(x[:min(batch, 2)])  # warm-up: oneDNN primitives, packed weights
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        out.append(run(x[i:i + batch]).float().mean(dim=(-2, -1)))
    return torch.cat(out).T, len(x) / (time.perf_counter() - start)


def agreement(fast: torch.Tensor, ref: torch.Tensor, k: int) -> tuple[float, float]:
    """(overlap, worst): the share of the fast top-k images whose fp32 value reaches the fp32
    k-th value, and the largest |fast - fp32| of a top image relative to the channel's fp32 top."""
    k = min(k, ref.shape[1])
    idx = torch.topk(fast, k, dim=1).indices
    kth = torch.topk(ref, k, dim=1).values[:, -1:]
    overlap = float((ref.gather(1, idx) >= kth).float().mean())
    scale = ref.max(dim=1).values.abs().clamp(min=1e-6)[:, None]
    worst = float(((fast.gather(1, idx) - ref.gather(1, idx)).abs() / scale).max())
    return overlap, worst


def bench_fast(args) -> None:
    model = rn50x4()
    layer = "layer4.5"
    x = pixels(args.images, model.image_size)

    def plain(batch):
        with torch.inference_mode():
            return capture_layers(model, batch, [layer])[layer]

    ref, plain_rate = pooled(plain, x, args.batch_size)
    print(f"| plain fp32 | {args.images} | {plain_rate:.2f} | 1.00x | - | - |")
    for precision, n in (("fp32", args.images), ("bf16", args.bf16_images)):
        tower = ScanTower(model, [layer], precision)
        values, rate = pooled(lambda b: tower.forward(b)[0][layer], x[:n], args.batch_size)
        overlap, worst = agreement(values, ref[:, :n], K)
        print(f"| scan tower {precision} | {n} | {rate:.2f} | {rate / plain_rate:.2f}x | {overlap:.1%} | "
              f"{worst:.2%} |")


def write_pngs(folder: Path, n: int, size: int) -> FolderSource:
    x = pixels(n, size)
    for i in range(n):
        Image.fromarray((x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(folder / f"{i:05d}.png")
    return FolderSource(folder)


def bench_principle(args) -> None:
    model = rn50x4() if args.model == "rn50x4" else load_model("demo:shapes")
    layer = "layer4.5" if args.model == "rn50x4" else "layer4.0"
    precision = resolve_precision(model.device, model.image_size, "auto")
    with tempfile.TemporaryDirectory() as tmp:
        source = write_pngs(Path(tmp), args.images, model.image_size)
        tower = ScanTower(model, [layer], precision)
        x = torch.stack([torch.from_numpy(np.asarray(Image.open(source.files[i]), np.float32) / 255).permute(2, 0, 1)
                         for i in range(len(source))])
        _, bare = pooled(lambda b: tower.forward(b)[0][layer], x, args.batch_size)
        options = ScanOptions(precision=precision, batch_size=args.batch_size, num_workers=args.workers)
        scan_layers_top_k(model, source, [layer], K, options=options)  # warm-up (the tower copy, workers)
        start = time.perf_counter()
        scan_layers_top_k(model, source, [layer], K, options=options)
        scan = args.images / (time.perf_counter() - start)
    print(f"| {args.model} {layer} | {precision} | {args.images} | {args.workers} | {bare:.2f} | {scan:.2f} | "
          f"{scan / bare:.1%} |")


def bench_ray(args) -> None:
    import ray

    model = rn50x4() if args.model == "rn50x4" else load_model("demo:shapes")
    layer = "layer4.5" if args.model == "rn50x4" else "layer4.0"
    counts = [int(n) for n in str(args.images).split(",")]
    actor_counts = [int(a) for a in args.actors.split(",")]
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sources, locals_ = {}, {}
        for n in counts:  # the local engine first, with no Ray running beside it
            folder = Path(tmp) / str(n)
            folder.mkdir()
            sources[n] = write_pngs(folder, n, model.image_size)
            start = time.perf_counter()
            locals_[n] = scan_layers_top_k(model, sources[n], [layer], K,
                                           options=ScanOptions(batch_size=args.batch_size))[layer]
            local_s = time.perf_counter() - start
            times.setdefault("local", []).append(local_s)
            print(f"| local | {n} | - | {local_s:.1f} | {n / local_s:.2f} | - | - | - |")
        start = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="error")
        init_s = time.perf_counter() - start
        for i, n in enumerate(counts):
            local, local_s = locals_[n], times["local"][i]
            for actors in actor_counts:
                far_options = ScanOptions(batch_size=args.batch_size, engine="ray", ray_actors=actors)
                seen: list[float] = []
                start = time.perf_counter()
                far = scan_layers_top_k(model, sources[n], [layer], K, options=far_options,
                                        progress=lambda done, total, what: seen.append(time.perf_counter()) if done
                                        else None)[layer]
                far_s = time.perf_counter() - start
                times.setdefault(f"ray, {actors} actor(s)", []).append(far_s)
                same = np.array_equal(far.top_indices, local.top_indices) and np.array_equal(far.top_values,
                                                                                            local.top_values)
                print(f"| ray, {actors} actor(s) | {n} | {init_s:.1f} | {far_s:.1f} | {n / far_s:.2f} | "
                      f"{(far_s - local_s) / local_s:+.0%} | {seen[0] - start:.1f} s | "
                      f"{'identical' if same else 'DIFFERENT'} |")
        ray.shutdown()
    if len(counts) > 1:
        # T(n) = fixed + n * per_image for each engine, from the shortest and the longest run
        span = counts[-1] - counts[0]
        local_per = (times["local"][-1] - times["local"][0]) / span
        print(f"\nper image, from {counts[0]} and {counts[-1]} images: local {local_per:.4f} s "
              f"(fixed {times['local'][0] - counts[0] * local_per:.1f} s)")
        for name, ts in times.items():
            if name != "local":
                per = (ts[-1] - ts[0]) / span
                print(f"{name}: {per:.4f} s per image ({per / local_per - 1:+.1%} against local), "
                      f"fixed {ts[0] - counts[0] * per:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["fast", "principle", "ray"])
    parser.add_argument("--model", choices=["rn50x4", "demo"], default="rn50x4")
    parser.add_argument("--images", default="64", help="a count; for ray, counts separated by commas")
    parser.add_argument("--bf16-images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--actors", default="1,2")
    args = parser.parse_args()
    if args.what != "ray":
        args.images = int(args.images)
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    if args.what == "fast":
        print("| path | images | images/s | against plain | top-16 overlap | largest rel. diff |")
        bench_fast(args)
    elif args.what == "principle":
        print("| model, layer | precision | images | loader workers | bare forward (img/s) | scan (img/s) "
              "| scan / bare |")
        bench_principle(args)
    else:
        print("| engine | images | Ray start-up (s) | scan (s) | images/s | against local | first result | top-k |")
        bench_ray(args)


if __name__ == "__main__":
    main()
