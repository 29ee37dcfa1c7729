"""The embedded model's shipped SAE (layer4.0): its quality, multimodal features against multimodal
neurons, and training throughput (docs/benchmarks.md).

    uv run python bench/bench_sae.py [--per-cell 20] [--null 100] [--only quality,multimodal,throughput]

Quality and multimodality are measured on the held-out images (the evaluation seed); the SAE was
trained on another seed (manifest: saes.layer4.0.command). Multimodal: the modality probe's
criterion (the same top concept in photo, drawing and text, z >= 1.5 in each), for the 512 neurons
and for the SAE's features (each image's mean code over the positions), against the same null:
relabelings that map no concept to itself, one per form after the first. Prints the CPU.
"""

from __future__ import annotations

import argparse
import subprocess
import time

import numpy as np
import torch

from mmneurons.activations import layer_means
from mmneurons.analysis import concept_modality_table, modality_of, multimodality
from mmneurons.analysis.modality import relabeled_null
from mmneurons.analysis.sae import SAETraining, feature_means, positions, sae_quality, train_sae
from mmneurons.models import load_model
from mmneurons.plugins.demo.data import CONCEPTS
from mmneurons.plugins.demo.evaluate import EVAL_SEED
from mmneurons.registry import get_registry
from mmneurons.sae import shipped_sae

LAYER = "layer4.0"


def cpu() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def quality(model, sae, source) -> None:
    start = time.perf_counter()
    q = sae_quality(model, sae, source, labels=list(CONCEPTS))
    print(f"\nquality over {q.positions} positions of {len(source)} held-out images "
          f"({time.perf_counter() - start:.1f} s): FVU {q.fvu:.3f}, L0 {q.l0:.1f}, dead {q.dead_fraction:.1%}")
    print("| form | zero-shot, the model | with layer4.0 replaced by the reconstruction | points |")
    print("|---|---|---|---|")
    for group, v in q.accuracy.items():
        change = 100 * (v["reconstructed"] - v["model"])
        print(f"| {group} | {v['model']:.3f} | {v['reconstructed']:.3f} | {change:+.1f} |")


def multimodal(model, sae, source, n_null: int) -> None:
    records = [source.record(i) for i in range(len(source))]

    def table_of(acts, kept):
        return concept_modality_table(acts, [records[i].category for i in kept],
                                      [modality_of(records[i]) for i in kept], concept_order=CONCEPTS)[0]

    means = layer_means(model, source, LAYER)
    codes, kept = feature_means(model, sae, source)
    print(f"\n| units | count | multimodal (z >= 1.5) | share | null mean (max) of {n_null} relabelings "
          "| median score of the multimodal | their concepts |")
    print("|---|---|---|---|---|---|---|")
    for name, table in (("neurons", table_of(means.acts, means.indices)), ("SAE features", table_of(codes, kept))):
        alive = np.abs(table).sum(axis=(0, 1)) > 0
        mask, top, score = multimodality(table[:, :, alive], 1.5)
        null = relabeled_null(table[:, :, alive], 1.5, n_null, seed=0)
        concepts = {}
        for k in top[mask]:
            concepts[CONCEPTS[k]] = concepts.get(CONCEPTS[k], 0) + 1
        print(f"| {name} | {int(alive.sum())} | {int(mask.sum())} | {mask.mean():.1%} | {np.mean(null):.1f} "
              f"({max(null)}) | {np.median(score[mask]):.2f} | "
              f"{', '.join(f'{c} {n}' for c, n in sorted(concepts.items(), key=lambda x: -x[1]))} |", flush=True)


def throughput(model, source) -> None:
    cfg = SAETraining(features=768, k=32, epochs=1, batch_size=256, lr=1e-3, aux_k=256, dead_after=2000)
    start = time.perf_counter()
    sae = train_sae(model, source, LAYER, cfg)
    total = time.perf_counter() - start
    _, height, width = model.layer_info(LAYER).shape
    count = len(source) * height * width  # one epoch's positions
    rows = torch.cat([positions(model, torch.rand(64, 3, 64, 64), LAYER) for _ in range(16)])
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)
    from mmneurons.analysis.sae import _step

    since = torch.zeros(768, dtype=torch.long)
    start = time.perf_counter()
    for lo in range(0, len(rows), 256):
        _step(sae, optimizer, rows[lo:lo + 256], since, cfg)
    steps_only = time.perf_counter() - start
    print(f"\ntraining throughput: {count / total:,.0f} positions/s end to end ({len(source)} images rendered, "
          f"read and trained on in {total:.1f} s, statistics pass included); the SAE steps alone "
          f"{len(rows) / steps_only:,.0f} positions/s (768 features, k 32, batches of 256)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-cell", type=int, default=20)
    parser.add_argument("--null", type=int, default=100)
    parser.add_argument("--only", default="quality,multimodal,throughput")
    args = parser.parse_args()
    print(f"CPU: {cpu()}")
    model = load_model("demo:shapes")
    sae = shipped_sae(model, LAYER)
    shapes = get_registry().get("mmneurons_image_sources", "demo_shapes")
    held_out = shapes.create(per_cell=args.per_cell, seed=EVAL_SEED)
    only = args.only.split(",")
    if "quality" in only:
        quality(model, sae, held_out)
    if "multimodal" in only:
        multimodal(model, sae, held_out, args.null)
    if "throughput" in only:
        throughput(model, shapes.create(per_cell=20, seed=11))


if __name__ == "__main__":
    main()
