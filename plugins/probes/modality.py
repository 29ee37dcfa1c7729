"""``modality``: the literal / symbolic / text test (:mod:`mmneurons.analysis.modality`) over an image
source whose images have a concept and a modality. A unit whose modalities disagree on the top
concept has no score (``null`` in the saved result)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmneurons.activations import layer_means, layers_means
from mmneurons.analysis import concept_modality_table, max_z, modality_of, multimodality
from mmneurons.images import ImageLoadError, skipped_note
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param
from mmneurons.results import ProbeResult
from mmneurons.units import unit_and_layer


class ModalityProbe(Probe):
    name = "modality"
    description = ("Literal / symbolic / text test: activation per (concept, modality) and a multimodality "
                   "score per unit; a whole layer ranked by it.")
    targets = ("layer", "unit")
    atlas = {"top": 0, "profile": True}
    params = (Param("z_min", "float", 1.5, min=0.0, help="z-score a unit's top concept needs in every modality"),
              Param("top", "int", 20, min=0, help="units to list in the ranking (0: all)"),
              Param("profile", "bool", False,
                    help="rank every unit (unscored ones last) with its mean activation per modality and concept"),
              Param("batch_size", "int", 64, min=1, help="images per forward pass"))

    def compute(self, model: ClipModel, target: Any, source: Any, values: dict,
                progress: Progress = no_progress) -> ProbeResult:
        unit, layer = unit_and_layer(target)
        records, modalities = self.structure(source)
        means = layer_means(model, source, layer, batch_size=values["batch_size"], progress=progress)
        return self.profile(model, str(target), unit, layer, records, modalities, means, values)

    def run_layers(self, model: ClipModel, layers: Sequence[str], source: Any, params: Any = None,
                   progress: Progress = no_progress) -> dict[str, ProbeResult]:
        """Every layer from one pass over the images."""
        values = self.resolve(params)
        layers = [self.parse_target(model, layer) for layer in layers]
        records, modalities = self.structure(source)
        means = layers_means(model, source, layers, batch_size=values["batch_size"], progress=progress)
        return {layer: self.profile(model, layer, None, layer, records, modalities, means[layer], values)
                for layer in layers}

    @staticmethod
    def structure(source: Any) -> tuple[list, list]:
        """Each image's record and modality; an error unless every image has a concept and a modality."""
        records = [source.record(i) for i in range(len(source))]
        modalities = [modality_of(r) for r in records]
        if any(m is None for m in modalities) or any(r.category is None for r in records):
            raise ImageLoadError("modality probe: every image needs a concept and a modality (folders "
                                 "concept/modality/*.png, or the demo_shapes source)")
        return records, modalities

    def profile(self, model: ClipModel, text: str, unit: Any, layer: str, records: list, modalities: list,
                means: Any, values: dict) -> ProbeResult:
        """The concept x modality table of ``layer`` and the multimodality of its units (or of one)."""
        info = model.layer_info(layer)
        acts, kept, skipped = means.acts, means.indices, len(means.skipped)
        table, concepts, mods = concept_modality_table(acts, [records[i].category for i in kept],
                                                       [modalities[i] for i in kept])
        mask, top, score = multimodality(table, values["z_min"])
        warnings = [skipped_note([(records[i].id, why) for i, why in means.skipped])] if skipped else []
        if values["z_min"] > max_z(len(concepts)):
            warnings.append(f"with {len(concepts)} concepts no z-score can exceed {max_z(len(concepts)):.2f}, below "
                            f"z_min={values['z_min']:g}: no unit can be multimodal; give more concepts or "
                            f"-p z_min={np.floor(max_z(len(concepts)) * 100) / 100:g} or less")
        order = np.argsort(-score)
        if not values["profile"]:
            order = [c for c in order if np.isfinite(score[c])]
        ranking = [{"unit": f"{layer}:{int(c)}", "concept": concepts[top[c]],
                    "score": float(score[c]) if np.isfinite(score[c]) else None, "multimodal": bool(mask[c])}
                   for c in order[: values["top"] or None]]
        if values["profile"]:
            for row in ranking:
                c = int(row["unit"].rpartition(":")[2])
                row["profile"] = {"concepts": list(concepts), "modalities": list(mods),
                                  "means": [[float(v) for v in table[m, :, c]] for m in range(len(mods))]}
        tables = {"ranking": ranking}
        summary = {"layer": layer, "multimodal_units": int(mask.sum()), "channels": info.channels,
                   "concepts": concepts, "modalities": mods, "images": len(kept), "skipped": skipped}
        images, captions = [], []
        if unit:
            from .figures import grouped_bars

            c = unit.channel
            tables["unit"] = [{"concept": concept, **{mod: float(table[m, k, c]) for m, mod in enumerate(mods)}}
                              for k, concept in enumerate(concepts)]
            summary.update({"unit": str(unit), "top_concept": concepts[top[c]],
                            "score": float(score[c]) if np.isfinite(score[c]) else None,  # None: modalities disagree
                            "multimodal": bool(mask[c])})
            images.append(grouped_bars(concepts, {mod: table[m, :, c] for m, mod in enumerate(mods)},
                                       f"{unit}: mean activation per concept and modality", "mean activation"))
            captions.append(f"{unit} by concept and modality")
        return ProbeResult(probe=self.name, model_id=model.model_id, target=text, summary=summary,
                           tables=tables, arrays={"table": table, "score": score}, images=images,
                           captions=captions, params=values, warnings=warnings)
