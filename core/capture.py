"""Activation capture with hooks that never outlive the call, and a truncated forward pass.

The forward pass stops as soon as every requested layer has produced its output: a hook raises
a private exception after storing the last one, so layer3 capture never runs layer4. The graph up
to the captured tensors stays intact, so the same capture serves gradient work (feature
visualization, attribution) when called with gradients enabled. :mod:`mmneurons.activations`
re-exports all of it next to the scans.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Sequence

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .models import ClipModel

__all__ = ["layer_hooks", "capture_layers", "unit_activations", "layer_gradient", "reduce_spatial"]


class _StopForward(Exception):
    """Raised by the deepest hook to end the forward pass early (never escapes this module)."""


@contextmanager
def layer_hooks(model: "ClipModel", layers: Sequence[str], *, stop: bool = True) -> Iterator[dict]:
    """Hook ``layers`` for one forward pass; yields the dict that fills with canonical outputs.

    Every hook is removed on exit, also when the forward raises. The model's lock is held from the
    first hook to the last removal, so another thread's forward pass (another app session on the
    same shared model) never runs into these hooks.
    """
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise ValueError("no layer requested")
    modules = {name: model.module(name) for name in layers}  # unknown names fail before any hook
    store: dict[str, torch.Tensor] = {}
    remaining = set(layers)
    handles = []

    def make_hook(name: str):
        def hook(_module, _inputs, output):
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
) -> dict[str, torch.Tensor]:
    """Run ``pixels`` ([0, 1], ``[B, 3, S, S]``) up to the deepest of ``layers`` and return
    ``{layer: [B, C, H, W]}``. Gradients flow when the caller has them enabled."""
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


def layer_gradient(model: "ClipModel", pixels: torch.Tensor, layer: str, score) -> torch.Tensor:
    """Gradient of ``score(image_embeddings) -> [B]`` with respect to ``layer``'s activations, laid
    out as ``[B, C, H, W]``. The zero-shot neuron search: at a neutral image, it ranks the units of
    ``layer`` by how strongly they drive a prompt's logit.

    The layer's output is replaced by a detached copy that requires grad, so this works with frozen
    weights and inputs that need no gradient, on ResNet maps and ViT token sequences alike.
    """
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
    return model.layout(layer)(grad)


def reduce_spatial(acts: torch.Tensor, reduce: str) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, C]`` by spatial ``mean`` or ``max``."""
    if reduce == "mean":
        return acts.mean(dim=(-2, -1))
    if reduce == "max":
        return acts.amax(dim=(-2, -1))
    raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
