"""``concept_decomposition``: a concept's zero-shot direction as a sparse, non-negative combination
of a layer's units, its quality against the number of units, and the paper's causal check
(:mod:`mmneurons.analysis.decomposition`).

The image source gives the context: the classes the causal check compares (its categories, unless
``compare`` names them), each unit's top category (the evidence next to each unit), how far to
raise the top unit (``raise_by`` standard deviations of it over the images) and, for
``method=fit``, the images the logit is fitted on. On a layer (an atlas column), every category of
the source is decomposed and each unit lists the concepts it helps build.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmneurons.analysis.decomposition import (DECOMPOSITION_METHODS, Decomposition, DecompositionContext,
                                              decompose_concept, decomposition_context)
from mmneurons.analysis.prompts import NEUTRAL_IMAGES
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param
from mmneurons.results import ProbeResult


def _names(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


class ConceptDecompositionProbe(Probe):
    name = "concept_decomposition"
    description = ("Concept -> a sparse non-negative combination of a layer's units that reproduces its zero-shot "
                   "direction, its quality per number of units, and the causal check (raise the top unit).")
    targets = ("text", "layer")
    atlas = {"units": 5}
    atlas_default = False  # a column for the units the concepts use; built when asked (--with)
    params = (Param("layer", "str", "auto", help="layer to decompose over ('auto': the last block)"),
              Param("method", "str", "gradient", choices=DECOMPOSITION_METHODS,
                    help="gradient: the units' directions in the embedding at a blank image (the paper's); "
                         "fit: the concept's logit regressed on the units over the images"),
              Param("units", "int", 10, min=1, max=10_000, help="most units in the decomposition"),
              Param("compare", "str", "", help="classes for the causal check, comma-separated (empty: the "
                                               "image categories)"),
              Param("raise_by", "float", 3.0, min=0.0,
                    help="how far the causal check raises the top unit, in standard deviations over the images"),
              Param("neutral", "str", "gray", choices=tuple(NEUTRAL_IMAGES), help="the blank image"),
              Param("batch_size", "int", 64, min=1, help="images per forward pass"))

    def parse_target(self, model: ClipModel, target: Any) -> str:
        """A concept is any text (also one with a colon); a layer name of the model means the layer."""
        return str(target).strip()

    def compute(self, model: ClipModel, target: Any, source: Any, values: dict,
                progress: Progress = no_progress) -> ProbeResult:
        text = str(target)
        if text in {info.name for info in model.layers()}:
            return self.run_layers(model, [text], source, values, progress)[text]
        if not text:
            raise ValueError("concept decomposition: the concept is empty")
        context = self.context(model, source, model.resolve_layer(values["layer"]), [text], values, progress)
        result = decompose_concept(model, text, context, values["units"], raise_by=values["raise_by"])
        return self.concept_result(model, result, context, values)

    def run_layers(self, model: ClipModel, layers: Sequence[str], source: Any, params: Any = None,
                   progress: Progress = no_progress) -> dict[str, ProbeResult]:
        """Every concept of the source (or of ``compare``) over each layer; per unit, the concepts
        whose decomposition uses it, with its share of each."""
        values = self.resolve(params)
        out = {}
        for layer in layers:
            model.layer_info(layer)
            context = self.context(model, source, layer, [], values, progress)
            uses: dict[int, list] = {}
            for concept in context.classes:
                pursuit = decompose_concept(model, concept, context, values["units"], raise_by=None).pursuit
                total = float(np.sum(pursuit.weights)) or 1.0
                for unit, weight in zip(pursuit.units, pursuit.weights):
                    uses.setdefault(unit, []).append((concept, float(weight) / total))
            table = []
            for unit in sorted(uses):
                parts = sorted(uses[unit], key=lambda p: -p[1])
                table.append({"unit": f"{layer}:{unit}", "concepts": ", ".join(f"{c} ({w:.2f})" for c, w in parts),
                              "top_concept": parts[0][0], "share": parts[0][1]})
            out[layer] = ProbeResult(
                probe=self.name, model_id=model.model_id, target=layer, tables={"units": table},
                summary={"layer": layer, "method": values["method"], "concepts": list(context.classes),
                         "units_used": len(table)}, params=values, warnings=context.warnings)
        return out

    def context(self, model: ClipModel, source: Any, layer: str, extra: list[str], values: dict,
                progress: Progress) -> DecompositionContext:
        return decomposition_context(model, source, layer, method=values["method"],
                                     classes=[*extra, *_names(values["compare"])], neutral=values["neutral"],
                                     batch_size=values["batch_size"], progress=progress)

    def concept_result(self, model: ClipModel, result: Decomposition, context: DecompositionContext,
                       values: dict) -> ProbeResult:
        from .figures import grouped_bars

        p, layer = result.pursuit, result.layer
        total = float(np.sum(p.weights)) or 1.0
        units = [{"rank": i + 1, "unit": f"{layer}:{u}", "weight": float(w), "share": float(w) / total,
                  "top_category": context.top_category[u]} for i, (u, w) in enumerate(zip(p.units, p.weights))]
        quality = [{"units": i + 1, result.quality_name: q, "added": f"{layer}:{u}"}
                   for i, (q, u) in enumerate(zip(p.quality, p.chosen))]
        summary = {"concept": result.concept, "layer": layer, "method": result.method,
                   "units": len(p.units), result.quality_name: p.quality[-1] if p.quality else None,
                   "top_unit": units[0]["unit"] if units else None}
        tables = {"units": units, "quality": quality}
        images, captions = [], []
        if result.raised is not None:
            order = np.argsort(-result.raised, kind="stable")
            tables["causal"] = [{"class": result.classes[i], "logit_change": float(result.raised[i])} for i in order]
            summary.update({"causal_rank": result.causal_rank, "raised_most": result.classes[order[0]],
                            "raise_amount": result.raise_amount})
            images.append(grouped_bars(list(result.classes), {"logit change": result.raised},
                                       f"raising {units[0]['unit']} on a {values['neutral']} image",
                                       "logit change"))
            captions.append(f"the causal check: each class's logit when {units[0]['unit']} is raised")
        return ProbeResult(probe=self.name, model_id=model.model_id, target=result.concept, summary=summary,
                           tables=tables, arrays={"weights": p.weights, "quality": np.array(p.quality)},
                           images=images, captions=captions, params=values, warnings=context.warnings)

