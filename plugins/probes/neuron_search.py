"""``neuron_search``: the paper's zero-shot neuron search. A text prompt's image-text logit is
roughly bilinear in the last layer's activations and the text embedding, so its gradient with
respect to a layer's units, at a neutral (gray) image, ranks the units that drive the prompt."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mmneurons.activations import layer_gradient
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param, resolve_params
from mmneurons.results import ProbeResult


def neutral_image(model: ClipModel, kind: str) -> torch.Tensor:
    value = {"gray": 0.5, "black": 0.0, "white": 1.0}[kind]
    return torch.full((1, 3, model.image_size, model.image_size), value, device=model.device)


def prompt_scores(model: ClipModel, prompt: str, layer: str, neutral: str = "gray") -> np.ndarray:
    """``[C]``: d logit(prompt) / d (mean activation of each channel of ``layer``) at a neutral image."""
    if not prompt or not prompt.strip():
        raise ValueError("neuron search: the prompt is empty")
    with torch.no_grad():
        text = model.encode_text([prompt])[0]
    scale = float(model.logit_scale)
    grad = layer_gradient(model, neutral_image(model, neutral), layer,
                          lambda emb: scale * F.normalize(emb, dim=-1) @ text)
    # d logit / d (spatial mean of a channel) = sum over positions of d logit / d position
    return grad.sum(dim=(2, 3))[0].detach().cpu().numpy()


class NeuronSearchProbe(Probe):
    name = "neuron_search"
    description = "Text prompt -> units of a layer ranked by how strongly they drive its image-text logit."
    targets = ("text",)
    source = "none"
    params = (Param("layer", "str", "auto", help="layer to search ('auto': the last block)"),
              Param("top", "int", 20, min=1, max=100_000, help="units to list"),
              Param("neutral", "str", "gray", choices=("gray", "black", "white"), help="the neutral image"))

    def run(self, model: ClipModel, target: Any, source: Any = None, params: dict | None = None,
            progress: Progress = no_progress) -> ProbeResult:
        values = resolve_params(self.params, params or {}, owner=f"probe '{self.name}'")
        layer = model.resolve_layer(values["layer"])
        prompt = str(target)
        progress(0, 1, f"searching {layer} for {prompt!r}")
        scores = prompt_scores(model, prompt, layer, values["neutral"])
        order = np.argsort(-scores)
        top = [{"unit": f"{layer}:{int(c)}", "channel": int(c), "score": float(scores[c])}
               for c in order[: values["top"]]]
        progress(1, 1, "done")
        unknown = getattr(model.tokenizer, "unknown_words", lambda t: [])(prompt)
        warnings = [f"words the tokenizer does not know: {', '.join(unknown)}"] if unknown else []
        return ProbeResult(probe=self.name, model_id=model.model_id, target=prompt, warnings=warnings,
                           summary={"layer": layer, "best": top[0]["unit"]}, tables={"units": top},
                           arrays={"scores": scores}, params=values)
