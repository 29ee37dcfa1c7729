"""Frozen CPU convolutions whose weights stay in oneDNN's own layouts between calls.

On CPU, ``F.conv2d`` hands oneDNN a plain weight tensor, and oneDNN reorders it into its blocked
layout on every call, once for the forward pass and once more, transposed, for the input
gradient. Feature visualization calls each convolution of a frozen tower thousands of times with
one input shape, so those reorders are pure waste (their share of a step: docs/benchmarks.md).
:class:`PackedConv2d` reorders the weight once per input shape, into the layouts oneDNN picks for
that shape, and computes the forward pass and the input gradient
with the same oneDNN kernels ``F.conv2d`` uses, so the results are the same numbers. A ReLU
after the convolution, and a residual sum before that ReLU, can ride along as oneDNN post-ops
(:meth:`PackedConv2d.relu_forward`).

The ops are the ones PyTorch's own compiler emits for CPU convolutions (``torch.ops.mkldnn``,
private); where they are missing or refuse to pack a weight for a shape, the convolution stays
plain.
"""

from __future__ import annotations

import torch
from torch import nn

_OPS = ("_convolution_pointwise", "_convolution_transpose_pointwise", "_reorder_convolution_weight",
        "_reorder_convolution_transpose_weight")
_MAX_SHAPES = 4  # packed weights kept per convolution (one per input shape seen lately)


def packing_available(dtype: torch.dtype) -> bool:
    """Whether this PyTorch build has the oneDNN ops, and (for bf16) a CPU oneDNN runs bf16 on."""
    if not torch.backends.mkldnn.is_available() or not all(hasattr(torch.ops.mkldnn, op) for op in _OPS):
        return False
    if dtype == torch.bfloat16:
        supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(supported is not None and supported())
    return dtype == torch.float32


def _geometry(conv: nn.Conv2d) -> tuple[list[int], list[int], list[int], int]:
    return list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups


class _Packed:
    """One input shape's packed weights and the geometry of its input gradient."""

    def __init__(self, conv: nn.Conv2d, shape: torch.Size) -> None:
        weight = conv.weight.detach()
        kernel = weight.shape[-2:]
        out = [(shape[2 + i] + 2 * conv.padding[i] - conv.dilation[i] * (kernel[i] - 1) - 1) // conv.stride[i] + 1
               for i in range(2)]
        # the transposed convolution's output must come back to the input's size exactly
        self.output_padding = [shape[2 + i] - ((out[i] - 1) * conv.stride[i] - 2 * conv.padding[i]
                                               + conv.dilation[i] * (kernel[i] - 1) + 1) for i in range(2)]
        padding, stride, dilation, groups = _geometry(conv)
        self.forward = torch.ops.mkldnn._reorder_convolution_weight(weight, padding, stride, dilation, groups,
                                                                    list(shape))
        self.backward = torch.ops.mkldnn._reorder_convolution_transpose_weight(
            weight, padding, self.output_padding, stride, dilation, groups, [shape[0], weight.shape[0], *out])


def _input_gradient(conv: "PackedConv2d", packed: _Packed, grad: torch.Tensor) -> torch.Tensor:
    padding, stride, dilation, groups = _geometry(conv)
    grad = grad.to(conv.weight.dtype).contiguous(memory_format=conv.memory_format)
    return torch.ops.mkldnn._convolution_transpose_pointwise(
        grad, packed.backward, None, padding, packed.output_padding, stride, dilation, groups, "none", [], "")


class _PackedConvFunction(torch.autograd.Function):
    """Forward and input gradient of a frozen convolution on packed weights (no weight gradient)."""

    @staticmethod
    def forward(ctx, x, conv, packed):
        ctx.conv, ctx.packed = conv, packed
        return torch.ops.mkldnn._convolution_pointwise(x, packed.forward, conv.bias, *_geometry(conv), "none", [], "")

    @staticmethod
    def backward(ctx, grad):
        return _input_gradient(ctx.conv, ctx.packed, grad), None, None


class _PackedConvReLUFunction(torch.autograd.Function):
    """``relu(conv(x) + residual)`` (residual optional) as one oneDNN call with post-ops: the ReLU
    and the residual sum cost no pass over memory of their own. The gradient is masked by the
    saved output, as ReLU's own, and goes to the input and to the residual."""

    @staticmethod
    def forward(ctx, x, residual, conv, packed):
        if residual is None:
            y = torch.ops.mkldnn._convolution_pointwise(x, packed.forward, conv.bias, *_geometry(conv), "relu", [], "")
        else:
            y = torch.ops.mkldnn._convolution_pointwise.binary(
                x, residual, packed.forward, conv.bias, *_geometry(conv), "add", None, "relu", [], "")
        ctx.conv, ctx.packed, ctx.residual = conv, packed, residual is not None
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        grad = grad.to(y.dtype).contiguous(memory_format=ctx.conv.memory_format)
        grad = torch.ops.aten.threshold_backward(grad, y, 0)
        return _input_gradient(ctx.conv, ctx.packed, grad), grad if ctx.residual else None, None, None


class PackedConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` with frozen weights that packs them for oneDNN once per input shape.

    It computes in the weight's dtype and memory format (the input is cast, as autocast would
    for a bf16 tower). Anything it cannot pack (a weight that needs a gradient, a non-CPU input,
    a build without the ops, a shape oneDNN refuses) goes through the plain ``nn.Conv2d`` path.
    """

    memory_format: torch.memory_format = torch.contiguous_format

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, memory_format: torch.memory_format = torch.contiguous_format) -> "PackedConv2d":
        """A packed convolution sharing ``conv``'s weight and bias, computing in ``memory_format``."""
        packed = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                     dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                     padding_mode=conv.padding_mode, device="meta")
        packed.weight, packed.bias = conv.weight, conv.bias
        packed.memory_format = memory_format
        packed._packed = {}
        return packed

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_packed"] = {}  # opaque oneDNN tensors can be neither copied nor pickled: a copy repacks
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self._packs(x)
        if packed is None:
            return super().forward(x)
        return _PackedConvFunction.apply(self._prepare(x), self, packed)

    def relu_forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``relu(self(x) + residual)`` in one oneDNN call (a ResNet block's ReLU, fused). No hook
        of this module runs: the caller calls it only where none is registered."""
        packed = self._packs(x)
        if packed is None:
            y = super().forward(x)
            return torch.relu(y if residual is None else y + residual)
        residual = None if residual is None else self._prepare(residual)
        return _PackedConvReLUFunction.apply(self._prepare(x), residual, self, packed)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.weight.dtype).contiguous(memory_format=self.memory_format)

    def _packs(self, x: torch.Tensor) -> _Packed | None:
        if self.weight.requires_grad or x.device.type != "cpu" or x.ndim != 4:
            return None
        key = (tuple(x.shape), self.weight.dtype)
        if key not in self._packed:
            if len(self._packed) >= _MAX_SHAPES:
                self._packed.clear()
            try:
                self._packed[key] = _Packed(self, x.shape) if packing_available(self.weight.dtype) else None
            except RuntimeError:  # a shape or build oneDNN refuses: this shape stays plain
                self._packed[key] = None
        return self._packed[key]


def packable(conv: nn.Module) -> bool:
    """A plain 2-d convolution with zero padding given as numbers (what the oneDNN ops take)."""
    return (type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and conv.weight.device.type == "cpu" and packing_available(conv.weight.dtype))


def pack_convolutions(module: nn.Module, memory_format: torch.memory_format = torch.contiguous_format) -> int:
    """Replace every packable ``nn.Conv2d`` under ``module`` by a :class:`PackedConv2d` computing in
    ``memory_format``, in place; return how many. Their weights must not need gradients."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if packable(child):
                setattr(parent, name, PackedConv2d.from_conv(child, memory_format))
                count += 1
    return count
