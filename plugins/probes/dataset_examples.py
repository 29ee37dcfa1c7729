"""``dataset_examples``: the images that most and least activate a unit (or every unit of a
layer), through the streaming top-k scan; for a unit, each top example with the map of where the
unit fired."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmneurons.activations import capture_layers, scan_top_k
from mmneurons.images import skipped_note, to_pil
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.overlay import heatmap_overlay
from mmneurons.params import Param
from mmneurons.results import ProbeResult
from mmneurons.units import Unit, unit_and_layer


class DatasetExamplesProbe(Probe):
    name = "dataset_examples"
    description = "Top-k and bottom-k images of a unit (with where it fired), or of every unit of a layer."
    targets = ("unit", "layer")
    params = (Param("k", "int", 12, min=1, max=10_000, help="images per end"),
              Param("reduce", "str", "mean", choices=("mean", "max"), help="spatial reduction of the unit's map"),
              Param("batch_size", "int", 32, min=1, help="images per forward pass"),
              Param("workers", "int", None, min=0, optional=True, help="loader processes (default: auto)"))

    def compute(self, model: ClipModel, target: Any, source: Any, values: dict,
                progress: Progress = no_progress) -> ProbeResult:
        unit, layer = unit_and_layer(target)
        text = str(target)
        scan = scan_top_k(model, source, layer, values["k"], reduce=values["reduce"], bottom=True,
                          batch_size=values["batch_size"], num_workers=values["workers"], progress=progress)
        summary = {"layer": layer, "images": scan.n_images, "skipped": len(scan.skipped)}
        warnings = scan.warnings + ([skipped_note(scan.skipped)] if scan.skipped else [])
        if unit is None:  # a whole layer: the ranking per unit, no pictures
            units = [{"unit": f"{layer}:{c}", "top": [scan.image_ids[i] for i in scan.top_indices[c][:3]],
                      "top_activation": float(scan.top_values[c][0])} for c in range(scan.top_values.shape[0])]
            return ProbeResult(probe=self.name, model_id=model.model_id, target=text, summary=summary,
                               tables={"units": units}, warnings=warnings, params=values,
                               arrays={"top_values": scan.top_values, "top_indices": scan.top_indices,
                                       "bottom_values": scan.bottom_values, "bottom_indices": scan.bottom_indices})
        c = unit.channel
        tables, images, captions = {}, [], []
        for end, idx, vals in (("top", scan.top_indices[c], scan.top_values[c]),
                               ("bottom", scan.bottom_indices[c], scan.bottom_values[c])):
            pics = [source.load(int(i)) for i in idx]
            maps = self.maps(model, pics, unit) if end == "top" else [None] * len(pics)
            tables[end] = [{"rank": r + 1, "image": scan.image_ids[i], "category": scan.categories[i],
                            "activation": float(v)} for r, (i, v) in enumerate(zip(idx, vals))]
            for pic, heat, i, v in zip(pics, maps, idx, vals):
                shown = to_pil(model.pixels(pic))
                images.append(heatmap_overlay(shown, heat) if heat is not None else shown)
                captions.append(f"{end} {scan.image_ids[i]}: {float(v):.3f}")
        summary.update({"unit": str(unit), "best": tables["top"][0]["image"]})
        return ProbeResult(probe=self.name, model_id=model.model_id, target=text, summary=summary, tables=tables,
                           images=images, captions=captions, warnings=warnings, params=values)

    @staticmethod
    def maps(model: ClipModel, pictures: list, unit: Unit) -> list[np.ndarray]:
        """The unit's activation map (``[H, W]``, clipped at 0) on each picture."""
        pixels = torch.stack([model.pixels(p) for p in pictures]).to(model.device)
        with torch.inference_mode(), model.lock:
            acts = capture_layers(model, pixels, [unit.layer])[unit.layer][:, unit.channel]
        return [np.clip(a.float().cpu().numpy(), 0, None) for a in acts]
