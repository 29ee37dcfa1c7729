"""How a text prompt reaches a layer: the gradient of its image-text logit with respect to each
unit at a neutral image (the paper's zero-shot neuron search). The logit is roughly bilinear in
the last layer's activations and the text embedding, so this ranks the units that drive the prompt
and, normalized, is the prompt's direction in the layer's channel space."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..activations import layer_gradient
from ..units import Direction

if TYPE_CHECKING:  # pragma: no cover
    from ..models import ClipModel

NEUTRAL_IMAGES = {"gray": 0.5, "black": 0.0, "white": 1.0}


def neutral_image(model: "ClipModel", kind: str = "gray") -> torch.Tensor:
    """A one-image batch of a uniform ``kind`` image (gray, black or white) at the model's size."""
    if kind not in NEUTRAL_IMAGES:
        raise ValueError(f"neutral image {kind!r}: allowed: {', '.join(NEUTRAL_IMAGES)}")
    return torch.full((1, 3, model.image_size, model.image_size), NEUTRAL_IMAGES[kind], device=model.device)


def prompt_gradient(model: "ClipModel", prompt: str, layer: str, neutral: str = "gray") -> np.ndarray:
    """``[C]``: d logit(prompt) / d (spatial mean of each channel of ``layer``) at a neutral image."""
    if not prompt or not prompt.strip():
        raise ValueError("the prompt is empty")
    with torch.no_grad():
        text = model.encode_text([prompt])[0]
    grad = layer_gradient(model, neutral_image(model, neutral), layer, lambda emb: model.logits(emb, text))
    # d logit / d (spatial mean of a channel) = the sum over positions of d logit / d position
    return grad.sum(dim=(2, 3))[0].detach().float().cpu().numpy()


def text_direction(model: "ClipModel", prompt: str, layer: str, neutral: str = "gray") -> Direction:
    """The unit-norm direction in ``layer``'s channel space along which ``prompt``'s logit grows."""
    vector = prompt_gradient(model, prompt, layer, neutral)
    norm = float(np.linalg.norm(vector))
    if norm == 0:
        raise ValueError(f"the logit of {prompt!r} does not depend on layer '{layer}' at a {neutral} image")
    return Direction(layer, vector / norm, label=f"text:{prompt}@{layer}")
