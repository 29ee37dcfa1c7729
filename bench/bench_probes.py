"""Probe throughput: images/s of ``dataset_examples`` over a whole layer, words/s of
``rendered_words`` over a layer, and seconds for ``neuron_label`` on a layer.

    uv run python bench/bench_probes.py [--models demo,rn50x4] [--images 64]

The images are the demo's concept x form probe set (rounded down to whole (concept, form) cells),
decoded into memory first; the words are the first N of the default 10,000-word list.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from mmneurons.images import ListSource, WordSource
from mmneurons.models import load_model
from mmneurons.plugins.demo.data import CONCEPTS, ShapesSource, probe_specs
from mmneurons.plugins.probes.rendered_words import default_words
from mmneurons.registry import get_registry

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,rn50x4")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    registry = get_registry()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"{platform.machine()}, device {args.device}")
    print("| model | input | layer | probe | items | seconds | throughput |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        model_id, layer = (("openclip:RN50x4@random", "layer4.5") if name == "rn50x4" else ("demo:shapes", "layer4.0"))
        model = load_model(model_id, device=args.device)
        n_cell = max(1, args.images // (len(CONCEPTS) * 3))
        images = ShapesSource(probe_specs(n_cell, 1), model.image_size)
        images = ListSource([images.load(i) for i in range(len(images))], categories=[images.record(i).category
                                                                                      for i in range(len(images))])
        words = WordSource(default_words(args.images), size=model.image_size)
        runs = [("dataset_examples", layer, images, {"k": 8}, "images/s"),
                ("rendered_words", layer, words, {"top": 5}, "words/s"),
                ("neuron_label", layer, images, {"concepts": ",".join(CONCEPTS), "k": 8}, "images/s")]
        for probe, target, source, params, unit in runs:
            start = time.perf_counter()
            registry.get("mmneurons_probes", probe).run(model, target, source, params)
            seconds = time.perf_counter() - start
            print(f"| {model_id} | {model.image_size}px | {layer} | {probe} | {len(source)} | {seconds:.1f} | "
                  f"{len(source) / seconds:.1f} {unit} |", flush=True)


if __name__ == "__main__":
    main()
