"""ReLU gradient redirection (Lucid's ``redirected_relu_grad``): for the first steps of a render,
a unit that is inactive on the starting image still gets a gradient through the ReLUs."""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Any, Iterator

import torch


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose gradient, for an example where nothing gets through, passes wherever it would
    raise the input (Lucid's ``redirected_relu_grad``).

    Built for speed, as it runs at every ReLU: in place where the module it replaces is, the plain
    gradient from the fused ``threshold_backward``, one per-example check (Lucid's: is the plain
    gradient's norm zero?), and the redirected gradient computed only for the examples that need
    it. For such an example the plain gradient is zero everywhere, so no gradient arrives where
    the output is positive, and Lucid's rule (drop the gradient where ``x < 0`` and it is positive)
    reduces to ``min(grad, 0)``. The output (not the input) is saved, so ``x == 0`` counts as
    negative: a measure-zero difference.
    """

    @staticmethod
    def forward(ctx, x, inplace=False):
        if inplace:
            ctx.mark_dirty(x)
            out = x.clamp_(min=0)
        else:
            out = x.clamp(min=0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        relu_grad = torch.ops.aten.threshold_backward(grad, out, 0)
        if relu_grad.ndim == 4 and relu_grad.is_contiguous(memory_format=torch.channels_last):
            flat = relu_grad.permute(0, 2, 3, 1).reshape(len(relu_grad), -1)  # a view, no copy
        else:
            flat = relu_grad.reshape(len(relu_grad), -1)
        # Lucid's test, squared norm > 0, as a batched dot product: a matrix kernel, several times faster
        # on CPU than any elementwise reduction (abs/amax/any) over the same memory
        dead = ~(torch.bmm(flat.unsqueeze(1), flat.unsqueeze(2)).view(-1) > 0)
        if bool(dead.any()):
            for b in dead.nonzero()[:, 0].tolist():  # in place per example: no gather/scatter copies
                torch.clamp(grad[b], max=0, out=relu_grad[b])
        return relu_grad, None


def _redirected_relu(x: torch.Tensor, inplace: bool) -> torch.Tensor:
    return _RedirectedReLU.apply(x, inplace)  # positional: torch 2.11's ``apply`` takes no keywords


@contextmanager
def redirected_relus(model: Any, enabled: bool) -> Iterator[None]:
    """Swap every ``nn.ReLU`` of the visual tower for the redirected one; always restored."""
    if not enabled:
        yield
        return
    relus = [m for m in model.visual.modules() if isinstance(m, torch.nn.ReLU)]
    try:
        for m in relus:
            m.forward = partial(_redirected_relu, inplace=m.inplace)
        yield
    finally:
        for m in relus:
            del m.forward  # back to the class's forward
