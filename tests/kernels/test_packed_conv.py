"""Packed convolutions: the same outputs and input gradients as ``nn.Conv2d``, packed once per
input shape, and the plain path wherever packing cannot apply."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mmneurons._kernels import packed_conv
from mmneurons._kernels.packed_conv import PackedConv2d, pack_convolutions, packing_available

needs_packing = pytest.mark.skipif(not packing_available(torch.float32),
                                   reason="this PyTorch build has no oneDNN convolution ops")

GEOMETRIES = {  # kernel, stride, padding, dilation, groups
    "1x1": (1, 1, 0, 1, 1), "3x3": (3, 1, 1, 1, 1), "stride 2": (3, 2, 1, 1, 1), "dilation 2": (3, 1, 2, 2, 1),
    "groups 4": (3, 2, 1, 1, 4), "5x5 stride 3": (5, 3, 2, 1, 1), "2x2 stride 2, no padding": (2, 2, 0, 1, 1),
}
PRECISIONS = {"fp32": (torch.float32, torch.contiguous_format, 1e-5),
              "bf16": (torch.bfloat16, torch.channels_last, 0.0)}  # bf16: the very kernels of F.conv2d


def _frozen_conv(geometry, dtype, memory_format, bias=True):
    k, s, p, d, g = geometry
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, k, stride=s, padding=p, dilation=d, groups=g, bias=bias)
    return conv.to(dtype).to(memory_format=memory_format).requires_grad_(False)


def _output_and_input_gradient(conv, x, grad):
    x = x.clone().requires_grad_(True)
    y = conv(x)
    (y.float() * grad).sum().backward()
    return y.detach(), x.grad


@needs_packing
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_outputs_and_input_gradients_match_the_plain_convolution_packed_or_not(geometry, precision):
    dtype, memory_format, tol = PRECISIONS[precision]
    packs = packing_available(dtype)  # bf16 needs a CPU oneDNN runs bf16 on (AVX-512 or AMX; not AVX2 alone)
    conv = _frozen_conv(GEOMETRIES[geometry], dtype, memory_format)
    packed = PackedConv2d.from_conv(conv, memory_format)
    for shape in ((4, 8, 17, 19), (1, 8, 16, 16)):  # odd sizes: the transposed pass needs output padding
        x = torch.randn(shape).to(dtype).contiguous(memory_format=memory_format)
        grad = torch.randn_like(conv(x), dtype=torch.float32)
        (y_ref, gx_ref), (y, gx) = (_output_and_input_gradient(c, x, grad) for c in (conv, packed))
        if packs:
            assert packed._packed[(shape, dtype)] is not None, "this shape went the plain way"
        else:  # no packing on this CPU: the plain convolution, never an error
            assert packed._packed.get((shape, dtype)) is None
        assert y.shape == y_ref.shape and y.dtype == y_ref.dtype and gx.shape == x.shape
        torch.testing.assert_close(y, y_ref, atol=tol, rtol=tol)
        torch.testing.assert_close(gx, gx_ref, atol=tol, rtol=tol)
        assert gx_ref.abs().max() > 0


@needs_packing
def test_weights_are_packed_once_per_input_shape_and_the_cache_stays_small():
    packed = PackedConv2d.from_conv(_frozen_conv(GEOMETRIES["3x3"], torch.float32, torch.contiguous_format))
    x = torch.randn(2, 8, 12, 12)
    packed(x)
    first = packed._packed[(tuple(x.shape), torch.float32)]
    packed(x)
    assert packed._packed[(tuple(x.shape), torch.float32)] is first and len(packed._packed) == 1
    for size in range(13, 20):
        packed(torch.randn(2, 8, size, size))
    assert 1 <= len(packed._packed) <= packed_conv._MAX_SHAPES


def test_a_trainable_weight_a_missing_op_or_a_refused_shape_goes_the_plain_way(monkeypatch):
    conv = nn.Conv2d(8, 16, 3, padding=1)  # weight needs gradients: no packing, weight gradient kept
    packed = PackedConv2d.from_conv(conv)
    packed(torch.randn(2, 8, 10, 10)).sum().backward()
    assert packed._packed == {} and conv.weight.grad is not None

    def refuse(*args, **kwargs):
        raise RuntimeError("could not create a primitive descriptor")

    frozen = _frozen_conv(GEOMETRIES["3x3"], torch.float32, torch.contiguous_format)
    x = torch.randn(2, 8, 10, 10)
    for simulate in ("a build without the ops", "a shape oneDNN refuses"):
        with monkeypatch.context() as m:
            if simulate == "a build without the ops":
                m.setattr(packed_conv, "packing_available", lambda dtype: False)
            else:
                m.setattr(packed_conv._Packed, "__init__", refuse)
            packed = PackedConv2d.from_conv(frozen)
            (y_ref, gx_ref), (y, gx) = (_output_and_input_gradient(c, x, torch.ones(2, 16, 10, 10))
                                        for c in (frozen, packed))
        assert packed._packed == {((2, 8, 10, 10), torch.float32): None}, simulate
        assert torch.equal(y, y_ref) and torch.equal(gx, gx_ref), simulate


@needs_packing
def test_pack_convolutions_replaces_every_plain_conv_in_place_and_copies_repack():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                        nn.Sequential(nn.Conv2d(8, 8, 1), nn.Conv2d(8, 4, 3, padding="same"))).requires_grad_(False)
    x = torch.randn(2, 3, 9, 9)
    expected = net(x)
    assert pack_convolutions(net) == 2  # padding="same" is not a number: that one stays plain
    assert [type(m).__name__ for m in net.modules() if isinstance(m, nn.Conv2d)] == [
        "PackedConv2d", "PackedConv2d", "Conv2d"]
    torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-5)
    copied = copy.deepcopy(net)  # packed weights are opaque oneDNN tensors: the copy packs its own
    assert copied[0]._packed == {} and net[0]._packed != {}
    torch.testing.assert_close(copied(x), expected, atol=1e-5, rtol=1e-5)
