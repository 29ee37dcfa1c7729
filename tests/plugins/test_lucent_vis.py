"""Feature visualization on the demo model: each objective moves its target far beyond gray and
noise, renders are seeded, batched renders match solo ones, and nothing is left hooked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmneurons.activations import capture_layers
from mmneurons.models import LayerError
from mmneurons.params import ParamError
from mmneurons.plugins.demo.plugin import DemoProvider
from mmneurons.results import FeatureVis
from mmneurons.units import Direction, UnitError

FAST = {"steps": 48, "lr": 0.05, "thresholds": "16"}
STAR_UNIT = "layer4.0:51"        # a multimodal "star" unit of demo:shapes (its manifest lists it)
ACTIVE_ON_GRAY = "layer4.0:34"   # active on gray (0.91) and on noise (0.83): room to go down


@pytest.fixture(scope="module")
def demo():
    return DemoProvider().load("shapes", "cpu")


def _vis(registry, name):
    return registry.get("mmneurons_visualizers", name)


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.visual.modules())


@pytest.mark.parametrize("name, targets", [
    ("channel", [STAR_UNIT, "layer3.0:10"]),
    ("neuron", [STAR_UNIT, "layer3.0:10@1,2"]),
    ("direction", "DIRECTION"),
])
def test_each_objective_raises_its_target_far_beyond_gray_and_noise(registry, demo, name, targets):
    if targets == "DIRECTION":
        targets = [Direction("layer4.0", np.random.default_rng(0).normal(size=512))]
    for res in _vis(registry, name).visualize(demo, targets, FAST):
        assert isinstance(res, FeatureVis) and res.image.size == (64, 64)
        baseline = max(res.activation_gray, res.activation_noise, 0.0)
        assert res.activation > 3 * baseline + 0.5, (res.target, res.activation, baseline)
        assert not res.warnings


def test_text_direction_raises_the_prompt_direction(registry, demo):
    [res] = _vis(registry, "text_direction").visualize(demo, ["a star"], {**FAST, "steps": 160})
    assert res.target == "text:a star@layer4.0"
    assert res.activation > 3 * max(res.activation_gray, res.activation_noise, 0.0) + 0.5


def test_negative_lowers_its_target_far_below_gray_and_noise(registry, demo):
    [res] = _vis(registry, "negative").visualize(demo, [ACTIVE_ON_GRAY], FAST)
    assert min(res.activation_gray, res.activation_noise) > 0.5
    assert res.activation < 0.2 * min(res.activation_gray, res.activation_noise)


def _gram_similarity(model, results, layer):
    x = torch.stack([torch.from_numpy(np.asarray(r.image.convert("RGB"), np.float32) / 255).permute(2, 0, 1)
                     for r in results])
    with torch.no_grad():
        acts = capture_layers(model, x, [layer])[layer].flatten(2)
    grams = F.normalize(acts @ acts.transpose(1, 2), dim=(1, 2))
    return np.mean([(grams[i] * grams[j]).sum().item() for i in range(len(grams)) for j in range(i + 1, len(grams))])


def test_diversity_images_differ_more_than_runs_with_other_seeds(registry, demo):
    params = {**FAST, "steps": 64}
    seeds = [_vis(registry, "channel").visualize(demo, [STAR_UNIT], {**params, "seed": s})[0] for s in range(3)]
    diverse = _vis(registry, "diversity").visualize(demo, [STAR_UNIT], {**params, "k": 3})
    assert [r.target for r in diverse] == [f"{STAR_UNIT}#{j}" for j in range(3)]
    plain, varied = _gram_similarity(demo, seeds, "layer4.0"), _gram_similarity(demo, diverse, "layer4.0")
    assert varied < plain - 0.3, (plain, varied)
    assert all(r.activation > 0.5 for r in diverse)


def test_same_seed_same_image_and_snapshots(registry, demo):
    a, b = (_vis(registry, "channel").visualize(demo, [STAR_UNIT], {**FAST, "thresholds": "8,16,99"})[0]
            for _ in range(2))
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert a.thresholds == [8, 16, 48] and len(a.snapshots) == 3 and len(a.loss_curve) == 48
    c = _vis(registry, "channel").visualize(demo, [STAR_UNIT], {**FAST, "seed": 1})[0]
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


def test_batching_does_not_cost_quality(registry, demo):
    units = [STAR_UNIT, "layer4.0:6", "layer4.0:83", "layer3.0:10"]
    batched = _vis(registry, "channel").visualize(demo, units, FAST)
    for unit, res in zip(units, batched):
        [solo] = _vis(registry, "channel").visualize(demo, [unit], FAST)
        assert res.activation >= 0.9 * solo.activation, (unit, res.activation, solo.activation)


def test_no_hook_remains_also_after_an_interrupted_render(registry, demo):
    before = _hooks(demo)
    relus = [m for m in demo.visual.modules() if isinstance(m, torch.nn.ReLU)]

    def interrupt(done, total, message):
        if done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _vis(registry, "channel").visualize(demo, [STAR_UNIT], {**FAST, "precision": "bf16"}, interrupt)
    assert _hooks(demo) == before
    assert all("forward" not in vars(m) for m in relus)  # redirected ReLUs restored
    assert demo.visual.conv1.weight.is_contiguous()      # channels_last undone


def test_alpha_gives_rgba_and_results_round_trip(registry, demo, tmp_path):
    [res] = _vis(registry, "channel").visualize(demo, [STAR_UNIT], {**FAST, "alpha": True})
    assert res.image.mode == "RGBA"
    back = FeatureVis.load(res.save(tmp_path / "vis"))
    assert back.target == STAR_UNIT and back.image.mode == "RGBA" and np.allclose(back.loss_curve, res.loss_curve)


def test_bad_input(registry, demo):
    channel = _vis(registry, "channel")
    with pytest.raises(LayerError, match="no layer 'layer9'"):
        channel.visualize(demo, ["layer9:0"], FAST)
    with pytest.raises(UnitError, match="channel 600 is out of range"):
        channel.visualize(demo, ["layer4.0:600"], FAST)
    with pytest.raises(ParamError, match="parameter 'thresholds'"):
        channel.visualize(demo, [STAR_UNIT], {**FAST, "thresholds": "a,b"})
    with pytest.raises(ValueError, match="a prompt is empty"):
        _vis(registry, "text_direction").visualize(demo, [" "], FAST)
    with pytest.raises(ValueError, match="takes Direction objects"):
        _vis(registry, "direction").visualize(demo, [STAR_UNIT], FAST)
    with pytest.raises(ValueError, match="nothing to visualize"):
        channel.visualize(demo, [], FAST)


def test_redirected_relu_gives_dead_units_a_gradient_and_is_always_restored(demo):
    from mmneurons.plugins.lucent_vis import _RedirectedReLU, redirected_relus

    x = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    (-_RedirectedReLU.apply(x).sum()).backward()       # loss falls when x rises: let it through
    assert x.grad.tolist() == [[-1.0, -1.0]]
    y = torch.tensor([[-1.0, 3.0]], requires_grad=True)
    (-_RedirectedReLU.apply(y).sum()).backward()       # some gradient passes: plain ReLU rule
    assert y.grad.tolist() == [[0.0, -1.0]]
    relus = [m for m in demo.visual.modules() if isinstance(m, torch.nn.ReLU)]
    with pytest.raises(RuntimeError, match="inside"):
        with redirected_relus(demo, True):
            assert all(vars(m).get("forward") == _RedirectedReLU.apply for m in relus)
            raise RuntimeError("inside")
    assert all("forward" not in vars(m) for m in relus)
