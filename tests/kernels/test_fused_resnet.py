"""Fused ReLUs: a fused tower computes what the unfused one does, and a block falls back to
open_clip's own forward whenever a hook, a swapped ReLU or an unfolded BatchNorm needs it."""

from __future__ import annotations

import pytest
import torch

from mmneurons._kernels import fused_resnet, tower
from mmneurons.activations import capture_layers
from mmneurons._kernels.packed_conv import PackedConv2d, packing_available

pytestmark = pytest.mark.skipif(not packing_available(torch.float32),
                                reason="this PyTorch build has no oneDNN convolution ops")

LAYERS = ["layer1", "layer2.0", "layer3", "layer4"]


@pytest.fixture
def fused_calls(monkeypatch):
    """The modules whose ReLU ran fused, in order."""
    calls = []
    original = PackedConv2d.relu_forward

    def counting(self, x, residual=None):
        calls.append((self, residual is not None))
        return original(self, x, residual)

    monkeypatch.setattr(PackedConv2d, "relu_forward", counting)
    return calls


def _towers(model, precision, monkeypatch):
    """Two fast towers, one without fused ReLUs and one with them (fp32 towers, NCHW, are not
    fused by ``fast_tower``; fusing one by hand still must compute the same)."""
    with monkeypatch.context() as m:
        m.setattr(tower, "fuse_relus", lambda visual: 0)
        unfused, fused = tower.fast_tower(model, precision), tower.fast_tower(model, precision)
    assert fused_resnet.fuse_relus(fused.visual) == 1 + 4
    return unfused, fused


def _fused_fp32(model):
    fused = tower.fast_tower(model, "fp32")
    fused_resnet.fuse_relus(fused.visual)
    return fused


def _run(model, x, layers=LAYERS):
    pixels = x.clone().requires_grad_(True)
    acts = capture_layers(model, pixels, layers)
    acts[layers[-1]].float().mean().backward()
    return acts, pixels.grad


def _cosine(a, b):
    a, b = a.detach().flatten().float(), b.detach().flatten().float()
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_fused_tower_computes_the_same_activations_and_input_gradients(bn_resnet, monkeypatch, fused_calls):
    unfused, fused = _towers(bn_resnet, "fp32", monkeypatch)
    x = torch.rand(3, 3, bn_resnet.image_size, bn_resnet.image_size)
    ref, ref_grad = _run(unfused, x)
    assert fused_calls == []
    got, got_grad = _run(fused, x)
    blocks = 4  # the tiny tower: layers [1, 1, 1, 1]
    assert len(fused_calls) == 3 + 3 * blocks and sum(residual for _, residual in fused_calls) == blocks
    for name in LAYERS:
        torch.testing.assert_close(got[name], ref[name], atol=1e-5, rtol=1e-5)
    assert ref_grad.abs().max() > 0
    torch.testing.assert_close(got_grad, ref_grad, atol=1e-6 * float(ref_grad.abs().max()), rtol=1e-4)


def test_fused_bf16_tower_is_as_close_to_float32_as_the_unfused_one(bn_resnet, monkeypatch, fused_calls):
    """bf16 input gradients through a deep net differ from float32 by tens of percent at single
    pixels (ReLU masks flip); the fused sum rounds once instead of twice, so it may differ from the
    unfused tower, but must not be further from the float32 model."""
    unfused, fused = _towers(bn_resnet, "bf16", monkeypatch)
    x = torch.rand(3, 3, bn_resnet.image_size, bn_resnet.image_size)
    ref, ref_grad = _run(bn_resnet, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (acts_u, grad_u), (acts_f, grad_f) = _run(unfused, x), _run(fused, x)
    # where oneDNN runs no bf16 (AVX2-only CPUs) every block takes open_clip's own forward instead
    assert len(fused_calls) == (3 + 3 * 4 if packing_available(torch.bfloat16) else 0)
    for name in LAYERS:
        assert _cosine(acts_f[name], ref[name]) >= min(0.999, _cosine(acts_u[name], ref[name])), name
    assert _cosine(grad_f, ref_grad) >= min(0.98, _cosine(grad_u, ref_grad) - 0.005)


def test_a_hook_inside_a_block_sees_its_own_output(bn_resnet, fused_calls):
    fused = _fused_fp32(bn_resnet)
    x = torch.rand(2, 3, bn_resnet.image_size, bn_resnet.image_size)
    inner = ["act3", "layer1.0.act2", "layer3.0.act3"]  # the stem's last ReLU, block ReLUs (one after the add)
    got = capture_layers(fused, x, inner + ["layer4"])
    ref = capture_layers(bn_resnet, x, inner + ["layer4"])
    for name in inner + ["layer4"]:
        torch.testing.assert_close(got[name], ref[name], atol=1e-5, rtol=1e-4)
    visual = fused.visual
    fused_modules = {id(m) for m, _ in fused_calls}
    for unfused in (visual, visual.layer1[0], visual.layer3[0]):  # they ran open_clip's forward
        assert not {id(unfused.conv1), id(unfused.conv2), id(unfused.conv3)} & fused_modules
    assert {id(visual.layer2[0].conv1), id(visual.layer4[0].conv3)} <= fused_modules


def test_a_swapped_relu_or_an_unfolded_batchnorm_keeps_its_block_unfused(bn_resnet, fused_calls):
    fused = tower.fast_tower(bn_resnet, "fp32", keep=["visual.layer2.0.bn1"])
    fused_resnet.fuse_relus(fused.visual)
    block = fused.visual.layer1[0]
    seen = []
    block.act2.forward = lambda x: seen.append(x.shape) or torch.relu(x)  # as the redirected ReLU swaps it
    capture_layers(fused, torch.rand(1, 3, bn_resnet.image_size, bn_resnet.image_size), ["layer4"])
    assert len(seen) == 1
    ran = {id(m) for m, _ in fused_calls}
    for unfused in (block, fused.visual.layer2[0]):
        assert id(unfused.conv1) not in ran and id(unfused.conv3) not in ran
    assert id(fused.visual.layer3[0].conv1) in ran


def test_only_bf16_towers_are_fused_and_only_open_clips_own_forwards_are_replaced(tiny_resnet):
    assert "stem" not in vars(tower.fast_tower(tiny_resnet, "fp32").visual)
    visual = tower.fast_tower(tiny_resnet, "bf16").visual
    assert "stem" in vars(visual) and all("forward" in vars(block) for layer in
                                          (visual.layer1, visual.layer4) for block in layer)
    from open_clip.modified_resnet import Bottleneck

    class OwnForward(Bottleneck):
        def forward(self, x):
            return super().forward(x)

    block = OwnForward(8, 2)
    assert fused_resnet.fuse_relus(block) == 0 and "forward" not in vars(block)
