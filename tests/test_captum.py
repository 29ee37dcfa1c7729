"""The reusable Captum pieces, used with Captum's own classes only."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from captum.attr import (IntegratedGradients, LayerGradCam, NeuronIntegratedGradients,
                         NoiseTunnel, Saliency)

from mmneurons.captum import (GridGradCam, SimilarityForward, UnitForward, VisualForward, ZeroShotForward,
                              ZeroShotTarget, forward_for, layer_of, unit_selector)
from mmneurons.units import Direction, Unit


def _pixels(n=2, seed=0):
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _live_unit(model, layer):
    """A channel of ``layer`` that responds to the test images (random models have dead ones)."""
    from mmneurons.activations import capture_layers

    with torch.no_grad():
        acts = capture_layers(model, _pixels(4, 1), [layer])[layer].mean(dim=(2, 3))
    return int((acts.std(dim=0) + acts.mean(dim=0)).argmax())


def _unit(model):
    layer = model.layers()[-2].name
    return Unit(layer, _live_unit(model, layer))


def _targets(model):
    unit = _unit(model)
    channels = model.layer_info(unit.layer).channels
    direction = Direction(unit.layer, np.random.default_rng(0).normal(size=channels))
    return [(UnitForward(model, unit), None), (UnitForward(model, direction), None),
            (ZeroShotForward(model, ["star", "moon", "ring"]), 1), (SimilarityForward(model, "a red star"), None)]


def test_ig_completeness_for_every_target(tiny_model):
    x = _pixels(1)
    for forward, index in _targets(tiny_model):
        ig = IntegratedGradients(forward)
        attr, delta = ig.attribute(x, baselines=x * 0, target=index, n_steps=64, return_convergence_delta=True)
        with torch.no_grad():
            fx, fb = forward(x), forward(x * 0)
        gap = float((fx - fb)[0, index] if index is not None else (fx - fb)[0])
        assert abs(float(attr.sum()) - gap) <= 2e-3 * max(1.0, abs(gap)), (type(forward).__name__, gap)
        assert abs(float(delta)) <= 2e-3 * max(1.0, abs(gap))


def test_neuron_ig_with_our_selector_equals_ig_on_unit_forward(tiny_model):
    unit = _unit(tiny_model)
    x = _pixels(2)
    selector = unit_selector(tiny_model, unit)
    assert pickle.loads(pickle.dumps(selector)) == selector
    neuron = NeuronIntegratedGradients(VisualForward(tiny_model), layer_of(tiny_model, unit.layer))
    a = neuron.attribute(x, neuron_selector=selector, baselines=x * 0, n_steps=24)
    b = IntegratedGradients(UnitForward(tiny_model, unit)).attribute(x, baselines=x * 0, n_steps=24)
    assert a.abs().sum() > 0
    assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_internal_batch_size_does_not_change_results(tiny_resnet):
    ig = IntegratedGradients(UnitForward(tiny_resnet, _unit(tiny_resnet)))
    x = _pixels(1)
    a = ig.attribute(x, baselines=x * 0, n_steps=30)
    b = ig.attribute(x, baselines=x * 0, n_steps=30, internal_batch_size=7)
    assert torch.allclose(a, b, atol=1e-7)


def test_noise_tunnel_and_metrics_run_on_our_wrappers(tiny_resnet):
    from captum.metrics import infidelity, sensitivity_max

    forward = UnitForward(tiny_resnet, _unit(tiny_resnet))
    x = _pixels(1)
    nt = NoiseTunnel(IntegratedGradients(forward))
    attr = nt.attribute(x, nt_type="smoothgrad", nt_samples=3, stdevs=0.05, baselines=x * 0, n_steps=8)
    assert attr.shape == x.shape and attr.abs().sum() > 0

    def perturb(inputs):
        noise = torch.randn_like(inputs) * 0.01
        return noise, inputs - noise

    ig_attr = IntegratedGradients(forward).attribute(x, baselines=x * 0, n_steps=8)
    value = infidelity(forward, perturb, x, ig_attr, n_perturb_samples=4)
    assert torch.isfinite(value).all()
    sens = sensitivity_max(Saliency(forward).attribute, x, n_perturb_samples=3)
    assert torch.isfinite(sens).all() and float(sens) > 0


def test_tcav_on_our_wrapper(tiny_resnet, tmp_path):
    from captum.concept import TCAV, Concept

    def batches(color, seed):
        g = torch.Generator().manual_seed(seed)
        base = torch.tensor(color).view(1, 3, 1, 1)
        return [(base + 0.1 * torch.randn(8, 3, 64, 64, generator=g)).clamp(0, 1) for _ in range(2)]

    red = Concept(0, "red", batches((0.9, 0.1, 0.1), 0))
    blue = Concept(1, "blue", batches((0.1, 0.1, 0.9), 1))
    forward = ZeroShotForward(tiny_resnet, ["star", "moon"])
    tcav = TCAV(forward, layers=["visual.layer3"], save_path=str(tmp_path))
    scores = tcav.interpret(_pixels(4), experimental_sets=[[red, blue]], target=0)
    result = scores["0-1"]["visual.layer3"]
    assert set(result) == {"sign_count", "magnitude"}
    assert torch.allclose(result["sign_count"].sum(), torch.tensor(1.0))


def test_grid_grad_cam_equals_layer_grad_cam_on_resnet_and_works_on_vit(tiny_resnet, tiny_vit):
    forward, index = forward_for(tiny_resnet, ZeroShotTarget("moon", ("star", "moon")))
    x = _pixels(2)
    cam = GridGradCam(forward, layer_of(tiny_resnet, "layer3"), tiny_resnet.layout("layer3"))
    ours = cam.attribute(x, target=index)
    theirs = LayerGradCam(forward, layer_of(tiny_resnet, "layer3")).attribute(x, target=index)
    assert torch.allclose(ours, theirs, atol=1e-7)
    name = "transformer.resblocks.0"  # the last block's patch tokens never reach the class-token output
    forward, index = forward_for(tiny_vit, ZeroShotTarget("moon", ("star", "moon")))
    cam = GridGradCam(forward, layer_of(tiny_vit, name), tiny_vit.layout(name)).attribute(x, target=index)
    assert cam.shape == (2, 1, 4, 4) and cam.abs().sum() > 0


def test_attributions_change_when_weights_are_randomized(tiny_resnet):
    """Adebayo et al.'s sanity check: an explanation must depend on the weights."""
    x = _pixels(1)
    labels = ["star", "moon", "ring"]
    a = IntegratedGradients(ZeroShotForward(tiny_resnet, labels)).attribute(x, baselines=x * 0, target=1, n_steps=16)
    scrambled = copy.deepcopy(tiny_resnet)
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for module in scrambled.visual.modules():
            if isinstance(module, torch.nn.Conv2d):  # same weights, shuffled: same scale, other function
                flat = module.weight.flatten()
                module.weight.copy_(flat[torch.randperm(flat.numel(), generator=g)].view_as(module.weight))
    b = IntegratedGradients(ZeroShotForward(scrambled, labels)).attribute(x, baselines=x * 0, target=1, n_steps=16)
    assert b.abs().sum() > 0
    corr = np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]
    assert corr < 0.5, corr


def test_bad_targets(tiny_resnet):
    with pytest.raises(ValueError, match="label list is empty"):
        ZeroShotTarget("dog", ())
    with pytest.raises(ValueError, match="'dog' is not among the labels"):
        ZeroShotTarget("dog", ("cat",))
    with pytest.raises(ValueError, match="label list is empty"):
        ZeroShotForward(tiny_resnet, [])
    with pytest.raises(ValueError, match="prompt is empty"):
        SimilarityForward(tiny_resnet, "  ")
