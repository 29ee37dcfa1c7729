"""``activation_by_category``: the paper's conditional probability plot. A unit's activation range
is split into equal bins from most negative to most positive; each bin's images are counted by
category; the x axis is in standard deviations from zero."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmneurons.images import ImageLoadError, iterate_batches
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param
from mmneurons.results import ProbeResult
from mmneurons.scan import ScanTower
from mmneurons.units import Unit


def category_histogram(values: np.ndarray, categories: list[str], bins: int) -> tuple[np.ndarray, list[dict]]:
    """(bin edges in activation units, rows {bin, x_std, category, count, fraction})."""
    lo, hi = float(values.min()), float(values.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
    which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    std = float(np.sqrt(np.mean(values ** 2))) or 1.0  # spread around zero, as the paper's axis
    rows = []
    for b in range(bins):
        sel = which == b
        total = int(sel.sum())
        center = (edges[b] + edges[b + 1]) / 2
        for category in sorted(set(categories)):
            count = int(sum(1 for i in np.flatnonzero(sel) if categories[i] == category))
            if count:
                rows.append({"bin": b, "x_std": float(center / std), "category": category, "count": count,
                             "fraction": count / total})
    return edges, rows


class ActivationByCategoryProbe(Probe):
    name = "activation_by_category"
    description = "A unit's activations binned from most negative to most positive, counted by image category."
    targets = ("unit",)
    params = (Param("bins", "int", 10, min=1, max=1000, help="equal-width activation bins"),
              Param("batch_size", "int", 64, min=1, help="images per forward pass"),
              Param("precision", "str", "auto", choices=("auto", "fp32", "bf16", "fp16"),
                    help="what the forward pass computes in (auto follows the hardware; docs/scale.md)"))

    def compute(self, model: ClipModel, unit: Unit, source: Any, values_: dict,
                progress: Progress = no_progress) -> ProbeResult:
        acts, cats, skipped = [], [], 0
        tower = ScanTower(model, [unit.layer], values_["precision"])  # the scans' fast path
        with tower.held():
            for batch in iterate_batches(source, model.image_size, batch_size=values_["batch_size"]):
                skipped += len(batch.skipped)
                if len(batch.indices):
                    acts.append(unit.read(tower.forward(batch.pixels)[0][unit.layer]).float().cpu())
                    cats += [source.record(int(i)).category for i in batch.indices]
                progress(len(cats) + skipped, len(source), f"activations of {unit}")
        if not cats:
            raise ImageLoadError(f"activation_by_category: no image could be loaded from {source.describe()}")
        if any(c is None for c in cats):
            raise ImageLoadError("activation_by_category: images need categories (subfolders of the image folder)")
        values = torch.cat(acts).numpy()
        edges, rows = category_histogram(values, cats, values_["bins"])
        from .figures import stacked_histogram

        std = float(np.sqrt(np.mean(values ** 2))) or 1.0
        centers = (edges[:-1] + edges[1:]) / 2 / std
        fractions = {c: [0.0] * values_["bins"] for c in sorted(set(cats))}
        for row in rows:
            fractions[row["category"]][row["bin"]] = row["fraction"]
        figure = stacked_histogram(list(centers), fractions, f"{unit}: images by category per activation bin",
                                   "activation (standard deviations from zero)")
        return ProbeResult(probe=self.name, model_id=model.model_id, target=str(unit), tables={"bins": rows},
                           images=[figure], captions=[f"{unit}: conditional probability plot"],
                           arrays={"activations": values, "edges": edges},
                           summary={"unit": str(unit), "images": len(cats), "skipped": skipped,
                                    "min": float(values.min()), "max": float(values.max())},
                           params=values_)
