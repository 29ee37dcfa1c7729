"""CLIP pieces that any Captum workflow can reuse: forward modules, neuron selectors, layers.

Every class here is a plain ``torch.nn.Module`` or a picklable callable, so Captum's own classes
take them as they are::

    from captum.attr import IntegratedGradients
    from mmneurons.captum import UnitForward
    ig = IntegratedGradients(UnitForward(model, "layer4.0:17"))
    attributions, delta = ig.attribute(pixels, baselines=pixels * 0, return_convergence_delta=True)

Inputs are pixels in [0, 1] at the model's input size (``model.pixels(pil_image)``); the model's
normalization happens inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr import LayerGradCam
from captum.log import log_usage
from torch import nn

from .activations import capture_layers
from .models import ClipModel, GridLayout
from .units import Direction, Unit

__all__ = [
    "UnitForward", "ZeroShotForward", "SimilarityForward", "VisualForward", "UnitSelector", "unit_selector",
    "layer_of", "GridGradCam", "ZeroShotTarget", "PromptTarget", "Target", "parse_target", "forward_for",
]


def _target_unit(model: ClipModel, unit: "str | Unit | Direction") -> "Unit | Direction":
    target = unit if isinstance(unit, Direction) else Unit.parse(unit)
    return target.validate(model)


class UnitForward(nn.Module):
    """pixels ``[B, 3, S, S]`` -> the unit's activation ``[B]`` (spatial mean, or at its position).

    The forward pass stops after the unit's layer. ``unit`` may be ``"layer4.0:17"``, a
    :class:`~mmneurons.units.Unit` or a :class:`~mmneurons.units.Direction`.
    """

    def __init__(self, model: ClipModel, unit: "str | Unit | Direction") -> None:
        super().__init__()
        self.clip = model
        self.visual = model.visual  # registered, so Captum/TCAV layer names read "visual.layer4.0"
        self.unit = _target_unit(model, unit)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        acts = capture_layers(self.clip, pixels, [self.unit.layer])[self.unit.layer]
        return self.unit.read(acts)


class VisualForward(nn.Module):
    """pixels -> image embeddings ``[B, D]``: the forward function for Captum's neuron and layer classes."""

    def __init__(self, model: ClipModel) -> None:
        super().__init__()
        self.clip = model
        self.visual = model.visual  # registered, so Captum/TCAV layer names read "visual.layer4.0"

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip.forward_visual(pixels)


class ZeroShotForward(nn.Module):
    """pixels -> zero-shot logits ``[B, len(labels)]`` (CLIP's scaled cosine similarities)."""

    def __init__(self, model: ClipModel, labels: Sequence[str], templates: Sequence[str] | None = None) -> None:
        super().__init__()
        self.clip = model
        self.visual = model.visual  # registered, so Captum/TCAV layer names read "visual.layer4.0"
        self.labels = [str(label) for label in labels]
        self.register_buffer("classifier", model.zero_shot_classifier(self.labels, templates).detach())

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip.zero_shot_logits(pixels, self.classifier)


class SimilarityForward(nn.Module):
    """pixels -> scaled cosine similarity ``[B]`` with a free text prompt."""

    def __init__(self, model: ClipModel, prompt: str) -> None:
        super().__init__()
        if not prompt or not prompt.strip():
            raise ValueError("the prompt is empty")
        self.clip = model
        self.visual = model.visual
        self.prompt = prompt
        with torch.no_grad():
            self.register_buffer("text", model.encode_text([prompt])[0].detach())

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip.logits(self.clip.forward_visual(pixels), self.text)


@dataclass(frozen=True)
class UnitSelector:
    """A picklable neuron selector for Captum's neuron classes: a layer's raw output -> ``[B]``.

    Use it with the layer from :func:`layer_of`; ViT token outputs are laid out on the patch grid
    first, so ``layer4.0:17@1,1`` and ``transformer.resblocks.1:5@2,3`` mean the same kind of thing.
    """

    target: "Unit | Direction"
    layout: GridLayout = GridLayout()

    def __call__(self, layer_output: Any) -> torch.Tensor:
        return self.target.read(self.layout(layer_output))


def unit_selector(model: ClipModel, unit: "str | Unit | Direction") -> UnitSelector:
    target = _target_unit(model, unit)
    return UnitSelector(target, model.layout(target.layer))


def layer_of(model: ClipModel, name: str) -> nn.Module:
    """The module of the visual tower called ``name``, for Captum's layer classes."""
    return model.module(name)


@dataclass(frozen=True)
class ZeroShotTarget:
    """The zero-shot logit of ``label`` among ``labels``."""

    label: str
    labels: tuple[str, ...]
    templates: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        if not self.labels:
            raise ValueError("zero-shot target: the label list is empty")
        if self.label not in self.labels:
            raise ValueError(f"zero-shot target: label {self.label!r} is not among the labels "
                             f"({', '.join(self.labels[:10])}{', ...' if len(self.labels) > 10 else ''})")

    def __str__(self) -> str:
        return f"label:{self.label}"


@dataclass(frozen=True)
class PromptTarget:
    """Image-text similarity with a free prompt."""

    prompt: str

    def __str__(self) -> str:
        return f"prompt:{self.prompt}"


Target = "Unit | Direction | ZeroShotTarget | PromptTarget"


def parse_target(text: "str | Any") -> Any:
    """``layer4.0:17`` -> Unit; ``prompt:a red star`` -> PromptTarget; other objects pass through."""
    if not isinstance(text, str):
        return text
    if text.startswith("prompt:"):
        return PromptTarget(text[len("prompt:"):].strip())
    return Unit.parse(text)


def forward_for(model: ClipModel, target: Any) -> tuple[nn.Module, int | None]:
    """(forward module, Captum ``target`` index or None) for a Unit, Direction, zero-shot or prompt target."""
    target = parse_target(target)
    if isinstance(target, (Unit, Direction)):
        return UnitForward(model, target), None
    if isinstance(target, ZeroShotTarget):
        return ZeroShotForward(model, target.labels, target.templates), target.labels.index(target.label)
    if isinstance(target, PromptTarget):
        return SimilarityForward(model, target.prompt), None
    raise TypeError(f"unsupported attribution target {target!r}: use a Unit, Direction, ZeroShotTarget or PromptTarget")


class GridGradCam(LayerGradCam):
    """Captum's LayerGradCam on the canonical grid, so ViT blocks (token sequences) work too.

    For ResNet maps it computes exactly what ``LayerGradCam`` does. ``attribute`` keeps Captum's
    ``log_usage`` decorator, so ``NoiseTunnel`` and ``TCAV`` can call ``attribute.__wrapped__``.
    """

    def __init__(self, forward_func, layer: nn.Module, layout: GridLayout = GridLayout(),  # noqa: B008 - frozen
                 device_ids=None) -> None:
        super().__init__(forward_func, layer, device_ids)
        self.layout = layout

    @log_usage()
    def attribute(self, inputs, target=None, additional_forward_args=None, attribute_to_layer_input=False,
                  relu_attributions: bool = False, attr_dim_summation: bool = True, grad_kwargs=None):
        with torch.enable_grad():
            grads, evals = compute_layer_gradients_and_eval(
                self.forward_func, self.layer, inputs, target, additional_forward_args,
                device_ids=self.device_ids, attribute_to_layer_input=attribute_to_layer_input,
                grad_kwargs=grad_kwargs)
        g, a = self.layout(grads[0]), self.layout(evals[0])
        cam = g.mean(dim=(2, 3), keepdim=True) * a
        cam = cam.sum(dim=1, keepdim=True) if attr_dim_summation else cam
        return F.relu(cam) if relu_attributions else cam
