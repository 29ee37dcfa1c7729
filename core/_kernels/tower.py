"""A private, faster copy of a ResNet visual tower for work that differentiates the input many times
(feature visualization).

In eval mode a BatchNorm after a convolution is a fixed per-channel affine map, so it can be folded
into the convolution's weights and bias: the same function (up to rounding) with one pass over
memory fewer forward and backward (docs/benchmarks.md has the gain). The copy also carries
its dtype and memory format (bf16 + channels_last), so autocast re-casts no weight on every step,
and on CPU its convolutions keep their weights packed for oneDNN (:mod:`mmneurons._kernels.packed_conv`)
instead of reordering them twice a step, with the ReLUs and residual sums fused into them
(:mod:`mmneurons._kernels.fused_resnet`). The shared model is never mutated: another thread can use
it while a render runs.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Iterable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .fused_resnet import fuse_relus
from .packed_conv import pack_convolutions

if TYPE_CHECKING:  # pragma: no cover
    from ..models import ClipModel


def _conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """Children ``(conv, bn)`` where the BatchNorm is applied directly to the convolution's output:
    ``convN``/``bnN`` siblings (open_clip's ModifiedResNet stem and Bottleneck) and consecutive
    entries of an ``nn.Sequential`` (its downsample branch)."""
    children = dict(module.named_children())
    if isinstance(module, nn.Sequential):
        names = list(children)
        pairs = list(zip(names, names[1:]))
    else:
        pairs = [(name, "bn" + name[len("conv"):]) for name in children if name.startswith("conv")]
    return [(c, b) for c, b in pairs
            if isinstance(children.get(c), nn.Conv2d) and isinstance(children.get(b), nn.BatchNorm2d)]


def fold_batchnorm(visual: nn.Module, keep: Iterable[str] = ()) -> int:
    """Fold every eval-mode BatchNorm into the convolution before it, in place; return how many.

    Pairs whose convolution or BatchNorm is named in ``keep`` stay as they are (a hook on either
    must still see its own output). Only for towers whose ``convN -> bnN`` order is known
    (ModifiedResNet): the caller decides.
    """
    keep = {name[len("visual."):] if name.startswith("visual.") else name for name in keep}
    folded = 0
    for prefix, module in list(visual.named_modules()):
        for conv_name, bn_name in _conv_bn_pairs(module):
            full = [f"{prefix}.{n}" if prefix else n for n in (conv_name, bn_name)]
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if keep & set(full) or bn.training or not bn.track_running_stats:
                continue
            setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(module, bn_name, nn.Identity())
            folded += 1
    return folded


def fast_tower(model: "ClipModel", precision: str, keep: Iterable[str] = (), *,
               channels_last: bool | None = None) -> "ClipModel":
    """``model`` with a private copy of its visual tower, BatchNorms folded and weights in the
    working dtype (``"bf16"``/``"fp16"``: bfloat16/float16; ``"fp32"``: float32), its convolutions
    packed for oneDNN on CPU, and there in channels_last its ReLUs fused into them.

    ``channels_last`` (default: for bf16/fp16 only) lays the weights out NHWC. Feature
    visualization keeps fp32 NCHW, where its backward pass was faster; a forward-only scan runs
    fp32 channels_last, twice as fast as NCHW on an AVX2 CPU (docs/benchmarks.md).

    Only ResNet towers are copied; any other tower is returned as ``model`` itself (nothing to
    fold; autocast handles bf16 there). The copy shares the text tower, tokenizer and metadata,
    and has its own lock and hooks.
    """
    if model.kind != "resnet":
        return model
    with model.lock:  # no other thread's hook gets copied along
        visual = copy.deepcopy(model.visual)
    fold_batchnorm(visual, keep)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if channels_last is None:
        channels_last = half is not None
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if half is not None:
        visual = visual.to(half)
    visual = visual.to(memory_format=memory_format)
    for p in visual.parameters():
        p.requires_grad_(False)
    if model.device.type == "cpu":
        pack_convolutions(visual, memory_format)
        if memory_format == torch.channels_last:  # on NCHW the post-op sum costs reorders: slower
            fuse_relus(visual)
    return model.with_visual(visual)
