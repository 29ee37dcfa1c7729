"""The paper's methods checked on the embedded model, where the answer is known (docs/paper.md):
the tests assert these, ``bench/bench_paper.py`` prints them for the docs. Each check calls the
same analysis functions as the probes and visualizers; nothing here is a second implementation."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mmneurons.activations import layer_means
from mmneurons.analysis import concept_modality_table, modality_of, units_for_concept
from mmneurons.analysis.ablation import ablation_sweep
from mmneurons.analysis.decomposition import decompose_concept, decomposition_context
from mmneurons.analysis.facets import Facet, train_facet
from mmneurons.models import ClipModel

LAYER = "layer4.0"


def concept_table(model: ClipModel, source, layer: str = LAYER) -> tuple[np.ndarray, list[str], list[str]]:
    """The modality table (``[M, K, C]`` mean activations, concepts, forms) over ``source``."""
    records = [source.record(i) for i in range(len(source))]
    means = layer_means(model, source, layer)
    return concept_modality_table(means.acts, [records[i].category for i in means.indices],
                                  [modality_of(records[i]) for i in means.indices])


def ablation_check(model: ClipModel, source, *, units: int = 5, mode: str = "zero",
                   layer: str = LAYER) -> list[dict]:
    """Per concept: its ``units`` most multimodal units removed together; the drop of its own
    accuracy and true-class logit against the mean drop of the other concepts, and its own drop
    per form. Selectivity is own drop / mean other drop (inf when only its own dropped)."""
    table, concepts, forms = concept_table(model, source, layer)
    sets = [units_for_concept(table, k, units) for k in range(len(concepts))]
    outcomes = ablation_sweep(model, source, layer, sets, labels=concepts, mode=mode)
    rows = []
    for k, (concept, outcome) in enumerate(zip(concepts, outcomes)):
        by_form = {g: {"accuracy_drop": float(outcome.group_accuracy_before[i, k] - outcome.group_accuracy_after[i, k]),
                       "logit_drop": float(outcome.group_logit_before[i, k] - outcome.group_logit_after[i, k])}
                   for i, g in enumerate(outcome.groups)}
        rows.append({"concept": concept, "units": sets[k],
                     "accuracy_drop": float(outcome.accuracy_drop[k]),
                     "others_accuracy_drop": float(np.delete(outcome.accuracy_drop, k).mean()),
                     "accuracy_selectivity": outcome.selectivity(k, "accuracy"),
                     "logit_drop": float(outcome.logit_drop[k]),
                     "others_logit_drop": float(np.delete(outcome.logit_drop, k).mean()),
                     "logit_selectivity": outcome.selectivity(k, "logit"), "by_form": by_form})
    return rows


def decomposition_check(model: ClipModel, source, *, method: str = "gradient", units: int = 10,
                        raise_by: float = 3.0, top: int = 5, layer: str = LAYER) -> list[dict]:
    """Per concept of ``source``: its decomposition's top ``top`` units and how many of them have the
    concept as their top category over the images, the quality with ``top`` and with ``units``
    units, and the causal check (the concept's rank, 0 = raised most, among all concepts)."""
    context = decomposition_context(model, source, layer, method=method)
    rows = []
    for concept in context.classes:
        result = decompose_concept(model, concept, context, units, raise_by=raise_by)
        chosen = result.pursuit.units[:top]
        quality = result.pursuit.quality
        rows.append({"concept": concept, "units": chosen,
                     "top_categories": [context.top_category[u] for u in chosen],
                     "own": sum(context.top_category[u] == concept for u in chosen),
                     f"{result.quality_name}_at_{top}": quality[min(top, len(quality)) - 1],
                     f"{result.quality_name}_at_{units}": quality[-1],
                     "causal_rank": result.causal_rank,
                     "raised_most": result.classes[int(np.argmax(result.raised))]})
    return rows



def train_facets(model: ClipModel, source, layer: str = "layer3.0") -> dict[str, Facet]:
    """One facet per form of ``source`` (photo, drawing, text), each against the other two forms."""
    forms = sorted({modality_of(source.record(i)) for i in range(len(source))} - {None})
    return {form: train_facet(model, source, form, layer, labels_from="form") for form in forms}


def facet_check(model: ClipModel, units: Sequence[str], facets: dict[str, Facet], folder: "str | Path",
                params: dict | None = None, facet_params: dict | None = None) -> dict:
    """Render ``units`` without a facet (``channel``) and with each facet (``faceted``), same seeds;
    per facet, the rate of units whose faceted render the facet probe scores higher than the
    plain render, and each unit's activation against the plain render's. The facets are written
    to ``folder`` (the visualizer reads a facet file, as a user's run does). ``params`` go to both
    visualizers, ``facet_params`` (facet_weight, facet_negative) to ``faceted`` only."""
    from mmneurons.registry import get_registry

    registry = get_registry()
    params = dict(params or {})
    # the faceted visualizer's frame (full, the paper's) unless params say otherwise: like for like
    plain = registry.get("mmneurons_visualizers", "channel").visualize(model, list(units), {"window": False, **params})
    plain_pixels = torch.stack([model.pixels(v.image) for v in plain])
    faceted = registry.get("mmneurons_visualizers", "faceted")
    out: dict = {"units": list(units), "facets": {}}
    for name, facet in facets.items():
        path = facet.save(Path(folder) / f"{name}.facet.json")
        renders = faceted.visualize(model, list(units), {**params, **(facet_params or {}), "facet": str(path)})
        pixels = torch.stack([model.pixels(v.image) for v in renders])
        before, after = facet.score(model, plain_pixels), facet.score(model, pixels)
        ratio = np.array([r.activation / p.activation if p.activation > 0 else np.nan
                          for r, p in zip(renders, plain)])
        out["facets"][name] = {"rate": float(np.mean(after > before)), "score_plain": before.tolist(),
                               "score_faceted": after.tolist(), "activation_ratio": ratio.tolist(),
                               "median_activation_ratio": float(np.nanmedian(ratio)),
                               "images": [r.image for r in renders]}
    out["plain_images"] = [p.image for p in plain]
    return out
