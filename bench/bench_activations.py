"""Images/s of the streaming top-k scan against a plain full forward of the same model.

Both read the same PNG files through the same loader; the scan stops at the layer it needs and
keeps a running top-k, the plain forward runs the whole visual tower and keeps nothing.

    uv run python bench/bench_activations.py [--models tiny,rn50x4] [--images 64] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmneurons.activations import scan_top_k
from mmneurons.images import FolderSource, iterate_batches
from mmneurons.models import load_model
from mmneurons.testing import tiny_clip


def make_images(folder: Path, n: int, size: int) -> FolderSource:
    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.random(3) * 255
        arr = np.clip(base + rng.normal(0, 50, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:05d}.png")
    return FolderSource(folder)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def plain_forward(model, source, batch_size, workers) -> None:
    with torch.inference_mode():
        for batch in iterate_batches(source, model.image_size, batch_size=batch_size, num_workers=workers):
            model.forward_visual(batch.pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,rn50x4")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}, device {args.device}")
    print("| model | input | images | plain full forward (img/s) | scan to layer | scan (img/s) | scan / plain |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        if name == "tiny":
            model, layers = tiny_clip("resnet", device=args.device), ["layer4.0", "layer3"]
        elif name == "rn50x4":
            model, layers = load_model("openclip:RN50x4@random", device=args.device), ["layer4.5", "layer3.9"]
        else:
            model = load_model(name, device=args.device)
            layers = [model.layers()[-2].name]
        with tempfile.TemporaryDirectory() as tmp:
            source = make_images(Path(tmp), args.images, model.image_size + 32)
            plain_forward(model, FolderSource(tmp), args.batch_size, 0)  # warm-up
            plain = args.images / timed(lambda: plain_forward(model, source, args.batch_size, args.workers))
            for layer in layers:
                scan = args.images / timed(lambda: scan_top_k(model, source, layer, 16, batch_size=args.batch_size,
                                                              num_workers=args.workers))
                print(f"| {model.model_id} | {model.image_size}px | {args.images} | {plain:.1f} | {layer} | "
                      f"{scan:.1f} | {scan / plain:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
