"""The fast tower: BatchNorms folded into a private copy compute the same function, with the same
input gradients, and leave the shared model untouched."""

from __future__ import annotations

import copy

import pytest
import torch

from mmneurons.activations import capture_layers
from mmneurons._kernels.packed_conv import PackedConv2d, packing_available
from mmneurons._kernels.tower import fast_tower, fold_batchnorm

LAYERS = ["act3", "layer1", "layer2.0", "layer3", "layer4"]


def _batchnorms(visual):
    return [name for name, m in visual.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_folded_copy_computes_the_same_activations_and_input_gradients(bn_resnet):
    tower = fast_tower(bn_resnet, "fp32")
    assert _batchnorms(tower.visual) == [] and _batchnorms(bn_resnet.visual) != []
    x = torch.rand(3, 3, bn_resnet.image_size, bn_resnet.image_size)
    grads = []
    for model in (bn_resnet, tower):
        pixels = x.clone().requires_grad_(True)
        acts = capture_layers(model, pixels, LAYERS)
        acts["layer4"].mean().backward()
        grads.append((acts, pixels.grad))
    (ref, ref_grad), (got, got_grad) = grads
    for name in LAYERS:
        assert torch.allclose(ref[name], got[name], atol=1e-5, rtol=1e-4), name
    assert ref_grad.abs().max() > 0
    assert torch.allclose(ref_grad, got_grad, atol=1e-6, rtol=1e-4)


def test_bf16_tower_is_close_and_the_shared_model_is_untouched(tiny_resnet):
    before = {k: v.clone() for k, v in tiny_resnet.visual.state_dict().items()}
    tower = fast_tower(tiny_resnet, "bf16")
    weight = tower.visual.layer1[0].conv1.weight
    assert weight.dtype == torch.bfloat16 and weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(p.requires_grad for p in tower.visual.parameters())
    x = torch.rand(2, 3, tiny_resnet.image_size, tiny_resnet.image_size)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = capture_layers(tower, x, ["layer4"])["layer4"].float()
    ref = capture_layers(tiny_resnet, x, ["layer4"])["layer4"]
    assert (got - ref).abs().max() <= 0.05 * ref.abs().max()
    after = tiny_resnet.visual.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert tiny_resnet.visual.conv1.weight.is_contiguous()
    assert tower.lock is not tiny_resnet.lock and tower.model.visual is not tiny_resnet.model.visual
    assert tower.model.transformer is tiny_resnet.model.transformer  # the text tower is shared


@pytest.mark.skipif(not packing_available(torch.float32), reason="this PyTorch build has no oneDNN convolution ops")
def test_every_convolution_of_a_cpu_tower_is_packed_and_the_shared_model_keeps_plain_ones(bn_resnet):
    tower = fast_tower(bn_resnet, "fp32", keep=["visual.layer1.0.conv2"])
    convs = {name: type(m) for name, m in tower.visual.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert convs and set(convs.values()) == {PackedConv2d}  # the kept conv too: same output, hook and all
    assert not any(isinstance(m, PackedConv2d) for m in bn_resnet.visual.modules())
    x = torch.rand(2, 3, bn_resnet.image_size, bn_resnet.image_size)
    capture_layers(tower, x, ["layer4"])
    packed = [m for m in tower.visual.modules() if isinstance(m, PackedConv2d)]
    assert all(m._packed and None not in m._packed.values() for m in packed)


def test_pairs_named_in_keep_stay_unfolded_so_their_hooks_see_their_own_output(bn_resnet):
    tower = fast_tower(bn_resnet, "fp32", keep=["visual.layer1.0.conv2"])
    assert _batchnorms(tower.visual) == ["layer1.0.bn2"]
    x = torch.rand(1, 3, bn_resnet.image_size, bn_resnet.image_size)
    name = "layer1.0.conv2"
    ref = capture_layers(bn_resnet, x, [name])[name]
    assert torch.allclose(capture_layers(tower, x, [name])[name], ref, atol=1e-6, rtol=1e-4)
    folded = capture_layers(fast_tower(bn_resnet, "fp32"), x, [name])[name]  # conv2 + bn2 there
    assert not torch.allclose(folded, ref, atol=1e-3, rtol=1e-2)


def test_fold_skips_a_batchnorm_in_training_mode(tiny_resnet):
    visual = copy.deepcopy(tiny_resnet.visual)
    visual.layer1[0].bn1.train()
    total = len(_batchnorms(visual))
    assert fold_batchnorm(visual) == total - 1
    assert _batchnorms(visual) == ["layer1.0.bn1"]


def test_other_towers_are_used_as_they_are(tiny_vit):
    assert fast_tower(tiny_vit, "bf16") is tiny_vit


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_tower_is_a_full_model(bn_resnet, precision):
    tower = fast_tower(bn_resnet, precision)
    x = torch.rand(1, 3, bn_resnet.image_size, bn_resnet.image_size)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        a, b = tower.encode_image(x).float(), bn_resnet.encode_image(x)
    assert torch.nn.functional.cosine_similarity(a, b).item() > 0.99
