"""Activation capture with hooks that never outlive the call, and a truncated forward pass.

The forward pass stops as soon as every requested layer has produced its output: a hook raises
a private exception after storing the last one, so layer3 capture never runs layer4. The graph up
to the captured tensors stays intact, so the same capture serves gradient work (feature
visualization, attribution) when called with gradients enabled. :mod:`mmneurons.activations`
re-exports all of it next to the scans.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .models import ClipModel

__all__ = ["Captured", "layer_hooks", "capture_layers", "unit_activations", "layer_gradient", "reduce_spatial",
           "edited_layer", "channel_dim", "layer_attribution"]


class Captured(dict):
    """``{layer: [B, C, H, W]}`` canonical activations, and in ``raw`` each layer's output as the
    module returned it: the tensor later layers are computed from, to differentiate with respect
    to (a ViT block's grid is a reshaped copy off that path)."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: dict[str, torch.Tensor] = {}


class _StopForward(Exception):
    """Raised by the deepest hook to end the forward pass early (never escapes this module)."""


@contextmanager
def layer_hooks(model: "ClipModel", layers: Sequence[str], *, stop: bool = True) -> Iterator[Captured]:
    """Hook ``layers`` for one forward pass; yields the dict that fills with canonical outputs.

    Every hook is removed on exit, also when the forward raises. The model's lock is held from the
    first hook to the last removal, so another thread's forward pass (another app session on the
    same shared model) never runs into these hooks.
    """
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise ValueError("no layer requested")
    modules = {name: model.module(name) for name in layers}  # unknown names fail before any hook
    store = Captured()
    remaining = set(layers)
    handles = []

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            store.raw[name] = output[0] if isinstance(output, (tuple, list)) else output
            store[name] = model.to_grid(name, output)
            remaining.discard(name)
            if stop and not remaining:
                raise _StopForward

        return hook

    with model.lock:
        try:
            for name, module in modules.items():
                handles.append(module.register_forward_hook(make_hook(name)))
            yield store
        finally:
            for handle in handles:
                handle.remove()


def capture_layers(
    model: "ClipModel", pixels: torch.Tensor, layers: Sequence[str], *, stop: bool = True
) -> Captured:
    """Run ``pixels`` ([0, 1], ``[B, 3, S, S]``) up to the deepest of ``layers`` and return
    ``{layer: [B, C, H, W]}`` (a :class:`Captured`, with the raw outputs). Gradients flow when the
    caller has them enabled."""
    with layer_hooks(model, layers, stop=stop) as store:
        try:
            model.visual(model.normalize(pixels.to(model.device)))
        except _StopForward:
            pass
    missing = [name for name in layers if name not in store]
    if missing:
        raise RuntimeError(f"layer(s) {', '.join(missing)} produced no output in the visual forward pass")
    return store


def unit_activations(model: "ClipModel", pixels: torch.Tensor, targets: Sequence) -> torch.Tensor:
    """``[B, len(targets)]`` values of Units/Directions (each target's ``read``), one truncated pass."""
    acts = capture_layers(model, pixels, sorted({t.layer for t in targets}))
    return torch.stack([t.read(acts[t.layer]) for t in targets], dim=1)


def _gradient_and_output(model: "ClipModel", pixels: torch.Tensor, layer: str,
                         score) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient of ``score(image_embeddings).sum()``, output) of ``layer``, both as the module
    returns them. The output is replaced by a detached copy that requires grad, so this works with
    frozen weights and inputs that need no gradient."""
    leaf: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        first = output[0] if isinstance(output, (tuple, list)) else output
        leaf["out"] = first.detach().requires_grad_(True)
        if isinstance(output, tuple):
            return (leaf["out"],) + tuple(output[1:])
        return leaf["out"]

    with model.lock:  # the hook must see only this thread's forward pass
        handle = model.module(layer).register_forward_hook(hook)
        try:
            with torch.enable_grad():
                embeddings = model.forward_visual(pixels)
                (grad,) = torch.autograd.grad(score(embeddings).sum(), leaf["out"])
        finally:
            handle.remove()
    return grad, leaf["out"].detach()


def layer_gradient(model: "ClipModel", pixels: torch.Tensor, layer: str, score) -> torch.Tensor:
    """Gradient of ``score(image_embeddings) -> [B]`` with respect to ``layer``'s activations, laid
    out as ``[B, C, H, W]``. The zero-shot neuron search: at a neutral image, it ranks the units of
    ``layer`` by how strongly they drive a prompt's logit. Works on ResNet maps and ViT token
    sequences alike."""
    grad, _ = _gradient_and_output(model, pixels, layer, score)
    return model.layout(layer)(grad)


def layer_attribution(model: "ClipModel", pixels: torch.Tensor, layer: str, score) -> torch.Tensor:
    """``[B, C]``: each unit's share of ``score(image_embeddings) -> [B]`` to first order, gradient x
    activation summed over the unit's positions (a ViT's class token included). Summed over the
    units it approximates the score's change from a zero layer output."""
    grad, out = _gradient_and_output(model, pixels, layer, score)
    product = grad * out
    if product.ndim == 3:  # tokens [B, T, C] or [T, B, C]
        return product.sum(dim=1 if model.layout(layer).batch_first else 0)
    return product.sum(dim=(2, 3)) if product.ndim == 4 else product


def channel_dim(output: torch.Tensor) -> int:
    """Where a layer's raw output keeps its channels (the units): dim 1 of ResNet maps ``[B, C, H,
    W]`` and pooled ``[B, C]`` outputs, the last dim of token sequences ``[B, T, C]`` / ``[T, B, C]``."""
    return 1 if output.ndim in (2, 4) else output.ndim - 1


@contextmanager
def edited_layer(model: "ClipModel", layer: str,
                 edit: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Every forward pass in this block runs with ``layer``'s output replaced by ``edit(view)``,
    where ``view`` is the output with its channels moved to dim 1 (``[B, C, ...]``; every position
    of a channel, a ViT's class token included) and ``edit`` returns a tensor of the same shape.
    Interventions (ablation, raising a unit) are written once against this view, for ResNet maps
    and token sequences alike. Holds the model's lock, like :func:`layer_hooks`."""
    module = model.module(layer)

    def hook(_module, _inputs, output):
        first = output[0] if isinstance(output, (tuple, list)) else output
        dim = channel_dim(first)
        edited = edit(first.movedim(dim, 1)).movedim(1, dim)
        if edited.shape != first.shape:
            raise ValueError(f"an edit of layer '{layer}' changed its shape {tuple(first.shape)} to "
                             f"{tuple(edited.shape)}")
        return (edited, *output[1:]) if isinstance(output, tuple) else edited

    with model.lock:
        handle = module.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()


def reduce_spatial(acts: torch.Tensor, reduce: str) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, C]`` by spatial ``mean`` or ``max``."""
    if reduce == "mean":
        return acts.mean(dim=(-2, -1))
    if reduce == "max":
        return acts.amax(dim=(-2, -1))
    raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
