"""open_clip's ModifiedResNet with each ReLU fused into the packed convolution before it.

In a folded tower (:mod:`mmneurons._kernels.tower`) a Bottleneck is ``relu(conv1)``, ``relu(conv2)``,
average pool, ``relu(conv3 + identity)``, and the stem three ``relu(conv)``. With the ReLU and the
residual sum as post-ops of the convolutions (:meth:`PackedConv2d.relu_forward`) they cost no pass
over memory of their own. Only for channels_last towers: on NCHW, oneDNN computes in a blocked
layout and the residual must be reordered into it, which made the fp32 demo model slower fused
(docs/benchmarks.md).

A block runs fused only while nothing can tell: its convolutions are packed, its BatchNorms
folded, its ReLUs the plain ones (not swapped, as the redirected ReLU of feature visualization
swaps them) and no hook sits on any of those modules (a hook there must see their own output);
otherwise it runs open_clip's own forward.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .packed_conv import PackedConv2d

_STAGES = (("conv1", "bn1", "act1"), ("conv2", "bn2", "act2"), ("conv3", "bn3", "act3"))


def _plain_stage(module: nn.Module, stage: tuple[str, str, str]) -> bool:
    conv, bn, act = (getattr(module, name, None) for name in stage)
    return (isinstance(conv, PackedConv2d) and type(bn) is nn.Identity and type(act) is nn.ReLU
            and "forward" not in vars(act) and not any(_hooked(m) for m in (conv, bn, act)))


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _fusable(module: nn.Module) -> bool:
    return all(_plain_stage(module, stage) for stage in _STAGES)


def _bottleneck(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if not _fusable(block):
        return type(block).forward(block, x)
    out = block.conv2.relu_forward(block.conv1.relu_forward(x))
    identity = x if block.downsample is None else block.downsample(x)
    return block.conv3.relu_forward(block.avgpool(out), residual=identity)


def _stem(visual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if not _fusable(visual):
        return type(visual).stem(visual, x)
    x = visual.conv3.relu_forward(visual.conv2.relu_forward(visual.conv1.relu_forward(x)))
    return visual.avgpool(x)


def fuse_relus(visual: nn.Module) -> int:
    """Give ``visual`` (an open_clip ModifiedResNet whose convolutions are packed) and each of its
    Bottlenecks the fused forward, in place; return how many modules got it. Blocks of any other
    class, or of a subclass with its own forward, are left alone."""
    from open_clip.modified_resnet import Bottleneck, ModifiedResNet

    count = 0
    if isinstance(visual, ModifiedResNet) and type(visual).stem is ModifiedResNet.stem:
        visual.stem = partial(_stem, visual)
        count += 1
    for module in visual.modules():
        if isinstance(module, Bottleneck) and type(module).forward is Bottleneck.forward:
            module.forward = partial(_bottleneck, module)
            count += 1
    return count
