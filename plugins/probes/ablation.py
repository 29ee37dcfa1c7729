"""``ablation``: causal ablation (:mod:`mmneurons.analysis.ablation`). On a unit or a set of units
(``layer4.0:6`` or ``layer4.0:6,83,88``): zero-shot accuracy and true-class logit per class and per
image group with the units removed and without, and the classes most hurt. On a layer: every unit
removed on its own, ranked by the class it hurts most (the atlas's "ablation effect" column; one
pass over the images per unit, so an atlas runs it only when asked: ``--with ablation``)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmneurons.analysis.ablation import ABLATION_MODES, AblationOutcome, ablation_sweep, skipped_message
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param
from mmneurons.results import ProbeResult
from mmneurons.units import Unit, UnitError


def parse_unit_set(text: str) -> tuple[str, list[int]] | str:
    """``layer:c`` or ``layer:c1,c2,...`` -> (layer, channels); a plain layer name stays a str."""
    text = str(text).strip()
    if ":" not in text:
        return text
    layer, _, rest = text.rpartition(":")
    parts = [p.strip() for p in rest.split(",")]
    if "@" in rest or not layer or not all(p.lstrip("-").isdigit() for p in parts):
        raise UnitError(f"cannot parse {text!r} as units to ablate: write LAYER:CHANNEL or "
                        f"LAYER:C1,C2,... (e.g. 'layer4.0:6,83,88'); a position (@) is not ablated alone")
    return layer, list(dict.fromkeys(int(p) for p in parts))


def _labels(text: str) -> list[str] | None:
    labels = [t.strip() for t in str(text).split(",") if t.strip()]
    return labels or None


def _f(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


class AblationProbe(Probe):
    name = "ablation"
    description = ("Remove a unit or a set of units (layer4.0:6,83,88) during the forward pass: zero-shot accuracy "
                   "and true-class logit per class and image group, and the classes most hurt.")
    targets = ("unit", "layer")
    atlas = {"top": 0}
    atlas_default = False  # one pass over the images per unit of the layer
    params = (Param("mode", "str", "zero", choices=ABLATION_MODES,
                    help="what a removed unit becomes: zero, or its mean over the images"),
              Param("labels", "str", "", help="zero-shot classes, comma-separated (empty: the image categories)"),
              Param("top", "int", 5, min=0, help="classes most hurt to list (on a layer: units to list; 0: all)"),
              Param("batch_size", "int", 64, min=1, help="images per forward pass"))

    def parse_target(self, model: ClipModel, target: Any) -> Any:
        parsed = parse_unit_set(target)
        if isinstance(parsed, str):
            model.layer_info(parsed)
            return parsed
        layer, channels = parsed
        for channel in channels:
            Unit(layer, channel).validate(model)
        return layer, channels

    def compute(self, model: ClipModel, target: Any, source: Any, values: dict,
                progress: Progress = no_progress) -> ProbeResult:
        if isinstance(target, str):
            return self.run_layers(model, [target], source, values, progress)[target]
        layer, channels = target
        (outcome,) = ablation_sweep(model, source, layer, [channels], labels=_labels(values["labels"]),
                                    mode=values["mode"], batch_size=values["batch_size"], progress=progress)
        return self.unit_result(model, outcome, values)

    def run_layers(self, model: ClipModel, layers: Sequence[str], source: Any, params: Any = None,
                   progress: Progress = no_progress) -> dict[str, ProbeResult]:
        """Every unit of each layer removed on its own, from one pass over the images per layer."""
        values = self.resolve(params)
        out = {}
        for layer in layers:
            layer = self.parse_target(model, layer)
            channels = model.layer_info(layer).channels
            outcomes = ablation_sweep(model, source, layer, [[c] for c in range(channels)],
                                      labels=_labels(values["labels"]), mode=values["mode"],
                                      batch_size=values["batch_size"], progress=progress)
            out[layer] = self.layer_result(model, layer, outcomes, values)
        return out

    def unit_result(self, model: ClipModel, outcome: AblationOutcome, values: dict) -> ProbeResult:
        from .figures import grouped_bars

        o = outcome
        name = f"{o.layer}:{','.join(map(str, o.channels))}"
        classes = [{"class": c, "images": int(o.counts[k]), "accuracy_before": _f(o.accuracy_before[k]),
                    "accuracy_after": _f(o.accuracy_after[k]), "accuracy_drop": _f(o.accuracy_drop[k]),
                    "logit_before": _f(o.logit_before[k]), "logit_after": _f(o.logit_after[k]),
                    "logit_drop": _f(o.logit_drop[k])} for k, c in enumerate(o.classes)]
        hurt = o.most_hurt(values["top"] or len(o.classes))
        tables = {"classes": classes, "most_hurt": [classes[k] for k in hurt]}
        weights = o.counts / max(o.counts.sum(), 1)
        summary = {"units": name, "layer": o.layer, "mode": o.mode,
                   "accuracy_before": float(np.nansum(o.accuracy_before * weights)),
                   "accuracy_after": float(np.nansum(o.accuracy_after * weights)),
                   "most_hurt": o.classes[hurt[0]], "most_hurt_logit_drop": _f(o.logit_drop[hurt[0]])}
        if o.groups:
            tables["groups"] = [
                {"group": g, "class": c, "accuracy_before": _f(o.group_accuracy_before[i, k]),
                 "accuracy_after": _f(o.group_accuracy_after[i, k]),
                 "logit_drop": _f(o.group_logit_before[i, k] - o.group_logit_after[i, k])}
                for i, g in enumerate(o.groups) for k, c in enumerate(o.classes)]
            summary["logit_drop_by_group"] = {
                g: _f(np.nanmean(o.group_logit_before[i] - o.group_logit_after[i])) for i, g in enumerate(o.groups)}
        series = ({g: o.group_logit_before[i] - o.group_logit_after[i] for i, g in enumerate(o.groups)}
                  if o.groups else {"all images": o.logit_drop})
        image = grouped_bars(o.classes, series, f"{name} ({o.mode}) removed: drop of the true-class logit",
                             "logit drop")
        return ProbeResult(probe=self.name, model_id=model.model_id, target=name, summary=summary, tables=tables,
                           arrays={"logit_drop": o.logit_drop, "accuracy_drop": o.accuracy_drop}, images=[image],
                           captions=[f"what removing {name} costs each class"], params=values,
                           warnings=skipped_message(o))

    def layer_result(self, model: ClipModel, layer: str, outcomes: list[AblationOutcome],
                     values: dict) -> ProbeResult:
        rows = []
        for o in outcomes:
            k = o.most_hurt(1)[0]
            rows.append({"unit": f"{layer}:{o.channels[0]}", "most_hurt": o.classes[k],
                         "logit_drop": _f(o.logit_drop[k]), "accuracy_drop": _f(o.accuracy_drop[k])})
        rows.sort(key=lambda r: -(r["logit_drop"] if r["logit_drop"] is not None else -np.inf))
        drops = np.array([[o.logit_drop[k] for k in range(len(o.classes))] for o in outcomes])
        summary = {"layer": layer, "mode": values["mode"], "units": len(outcomes),
                   "largest": rows[0]["unit"] if rows else None}
        return ProbeResult(probe=self.name, model_id=model.model_id, target=layer, summary=summary,
                           tables={"units": rows[: values["top"] or None]}, arrays={"logit_drop": drops},
                           params=values, warnings=skipped_message(outcomes[0]) if outcomes else [])
