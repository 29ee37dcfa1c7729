"""``neuron_search``: the paper's zero-shot neuron search: the units of a layer ranked by the
gradient of a prompt's logit at a neutral image (:func:`mmneurons.analysis.prompt_gradient`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmneurons.analysis import prompt_gradient
from mmneurons.analysis.prompts import NEUTRAL_IMAGES
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param
from mmneurons.results import ProbeResult


class NeuronSearchProbe(Probe):
    name = "neuron_search"
    description = "Text prompt -> units of a layer ranked by how strongly they drive its image-text logit."
    targets = ("text",)
    source = "none"
    params = (Param("layer", "str", "auto", help="layer to search ('auto': the last block)"),
              Param("top", "int", 20, min=1, max=100_000, help="units to list"),
              Param("neutral", "str", "gray", choices=tuple(NEUTRAL_IMAGES), help="the neutral image"))

    def compute(self, model: ClipModel, prompt: Any, source: Any, values: dict,
                progress: Progress = no_progress) -> ProbeResult:
        layer = model.resolve_layer(values["layer"])
        prompt = str(prompt)
        if not prompt:
            raise ValueError("neuron search: the prompt is empty")
        progress(0, 1, f"searching {layer} for {prompt!r}")
        scores = prompt_gradient(model, prompt, layer, values["neutral"])
        order = np.argsort(-scores)
        top = [{"unit": f"{layer}:{int(c)}", "channel": int(c), "score": float(scores[c])}
               for c in order[: values["top"]]]
        progress(1, 1, "done")
        unknown = getattr(model.tokenizer, "unknown_words", lambda t: [])(prompt)
        warnings = [f"words the tokenizer does not know: {', '.join(unknown)}"] if unknown else []
        return ProbeResult(probe=self.name, model_id=model.model_id, target=prompt, warnings=warnings,
                           summary={"layer": layer, "best": top[0]["unit"]}, tables={"units": top},
                           arrays={"scores": scores}, params=values)
