"""``modality``: the literal / symbolic / text test. A unit's mean activation per (concept,
modality), z-scored across concepts within each modality; a unit is multimodal when its top
concept is the same in every modality with z >= ``z_min`` in each. A unit whose modalities
disagree on the top concept has no score (``null`` in the saved result)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmneurons.activations import layer_means
from mmneurons.images import ImageLoadError, skipped_note
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param, resolve_params
from mmneurons.results import ProbeResult
from mmneurons.units import Unit


def modality_of(record) -> str | None:
    """A record's modality: ``meta['form']`` (generated sets) or the second folder level
    (``concept/modality/image.png``)."""
    if record.meta.get("form"):
        return record.meta["form"]
    parts = record.id.replace("\\", "/").split("/")
    return parts[1] if len(parts) >= 3 else None


def concept_modality_table(acts: np.ndarray, concepts: Sequence[str], modalities: Sequence[str]):
    """(``[M, K, C]`` mean activations, concept names, modality names); every cell must have images."""
    concept_names = sorted(set(concepts))
    modality_names = sorted(set(modalities))
    concepts, modalities = np.asarray(concepts), np.asarray(modalities)
    table = np.zeros((len(modality_names), len(concept_names), acts.shape[1]))
    missing = []
    for m, modality in enumerate(modality_names):
        for k, concept in enumerate(concept_names):
            sel = (modalities == modality) & (concepts == concept)
            if not sel.any():
                missing.append(f"{concept}/{modality}")
                continue
            table[m, k] = acts[sel].mean(axis=0)
    if missing:
        raise ImageLoadError(f"modality probe: no image for {', '.join(missing[:8])}"
                             f"{' ...' if len(missing) > 8 else ''}; every concept needs every modality")
    return table, concept_names, modality_names


def max_z(concepts: int) -> float:
    """The largest z-score one of ``concepts`` values can have (one high, the others equal):
    sqrt(concepts - 1). With 2 concepts it is 1.0, with 3 it is 1.41."""
    return float(np.sqrt(max(concepts - 1, 0)))


def multimodality(table: np.ndarray, z_min: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(multimodal ``[C]`` bool, top concept ``[C]``, score ``[C]`` = the smallest z of the top concept
    over modalities where all modalities agree, else -inf)."""
    std = table.std(axis=1, keepdims=True)
    z = (table - table.mean(axis=1, keepdims=True)) / np.where(std > 1e-12, std, np.inf)
    top = table.argmax(axis=1)                                    # [M, C]
    agree = (top == top[0]).all(axis=0)
    z_top = np.take_along_axis(z, top[:, None, :], axis=1)[:, 0, :]  # [M, C]
    score = np.where(agree, z_top.min(axis=0), -np.inf)
    return agree & (score >= z_min), top[0], score


class ModalityProbe(Probe):
    name = "modality"
    description = ("Literal / symbolic / text test: activation per (concept, modality) and a multimodality "
                   "score per unit; a whole layer ranked by it.")
    targets = ("layer", "unit")
    params = (Param("z_min", "float", 1.5, min=0.0, help="z-score a unit's top concept needs in every modality"),
              Param("top", "int", 20, min=1, help="units to list in the ranking"),
              Param("batch_size", "int", 64, min=1, help="images per forward pass"))

    def run(self, model: ClipModel, target: Any, source: Any, params: dict | None = None,
            progress: Progress = no_progress) -> ProbeResult:
        values = resolve_params(self.params, params or {}, owner=f"probe '{self.name}'")
        unit = Unit.parse(target) if ":" in str(target) else None
        layer = unit.layer if unit else str(target)
        info = model.layer_info(layer)
        if unit:
            unit.validate(model)
        records = [source.record(i) for i in range(len(source))]
        modalities = [modality_of(r) for r in records]
        if any(m is None for m in modalities) or any(r.category is None for r in records):
            raise ImageLoadError("modality probe: every image needs a concept and a modality (folders "
                                 "concept/modality/*.png, or the demo_shapes source)")
        means = layer_means(model, source, layer, batch_size=values["batch_size"], progress=progress)
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
        ranking = [{"unit": f"{layer}:{int(c)}", "concept": concepts[top[c]], "score": float(score[c]),
                    "multimodal": bool(mask[c])} for c in order[: values["top"]] if np.isfinite(score[c])]
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
        return ProbeResult(probe=self.name, model_id=model.model_id, target=str(target), summary=summary,
                           tables=tables, arrays={"table": table, "score": score}, images=images,
                           captions=captions, params=values, warnings=warnings)
