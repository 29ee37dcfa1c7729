"""The visualizers on demo:shapes: each objective moves its target, reported values are the saved
images' own, renders are reproducible, hooks are removed, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmneurons.activations import capture_layers
from mmneurons.models import LayerError
from mmneurons.params import ParamError
from mmneurons.results import FeatureVis
from mmneurons.units import Direction, Unit, UnitError

from .common import ACTIVE_ON_GRAY, FAST, STAR_UNIT, ZERO_ON_GRAY_AND_NOISE, hooks, vis


@pytest.mark.parametrize("name, targets", [
    ("channel", [STAR_UNIT, "layer3.0:10"]),
    ("neuron", [STAR_UNIT, "layer3.0:10@1,2"]),
    ("direction", "DIRECTION"),
])
def test_each_objective_raises_its_target_far_beyond_gray_and_noise(registry, demo, name, targets):
    """Each objective on the full frame (the channel default's window, at this bar, is
    test_candidates.py's)."""
    if targets == "DIRECTION":
        targets = [Direction("layer4.0", np.random.default_rng(0).normal(size=512))]
    for res in vis(registry, name).visualize(demo, targets, {**FAST, "window": False}):
        assert isinstance(res, FeatureVis) and res.image.size == (64, 64)
        baseline = max(res.activation_gray, res.activation_noise, 0.0)
        assert res.activation > 3 * baseline + 0.5, (res.target, res.activation, baseline)
        assert not res.warnings


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_reported_values_are_the_final_images_values_in_float32(registry, demo, precision):
    targets = [STAR_UNIT, Direction("layer4.0", np.random.default_rng(1).normal(size=512))]
    results = [vis(registry, "channel").visualize(demo, targets[:1], {**FAST, "precision": precision})[0],
               vis(registry, "direction").visualize(demo, targets[1:], {**FAST, "precision": precision})[0]]
    gray = torch.full((1, 3, 64, 64), 0.5)
    for target, res in zip(targets, results):
        target = target if isinstance(target, Direction) else Unit.parse(target)
        x = torch.from_numpy(np.asarray(res.image.convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            on_image = float(target.read(capture_layers(demo, x, [target.layer])[target.layer])[0])
            on_gray = float(target.read(capture_layers(demo, gray, [target.layer])[target.layer])[0])
        # the value reported is the saved PNG's own: only the memory layout of the two reads differs
        assert abs(res.activation - on_image) <= 1e-5 * abs(on_image) + 1e-5, (target, res.activation, on_image)
        assert abs(res.activation_gray - on_gray) <= 1e-5 * abs(on_gray) + 1e-6


def test_gray_and_noise_are_read_once_per_call_and_match_solo_renders(registry, demo):
    units = [STAR_UNIT, "layer4.0:6", "layer4.0:83", "layer3.0:10"]
    demo.layers()  # cached layer shapes: their one-image pass is not what this test counts
    passes = []  # images per forward pass of the shared model (the copy it renders on inherits the hook)
    handle = demo.visual.register_forward_pre_hook(
        lambda m, inputs: passes.append(inputs[0].shape[0]) if m is demo.visual else None)
    try:
        batched = vis(registry, "channel").visualize(demo, units, {**FAST, "steps": 2, "batch_size": 2})
    finally:
        handle.remove()
    assert passes == [2, 2, 2]  # gray + noise once, then each batch's two final images
    for unit, res in zip(units, batched):
        [solo] = vis(registry, "channel").visualize(demo, [unit], {**FAST, "steps": 2})
        assert (res.activation_gray, res.activation_noise) == (solo.activation_gray, solo.activation_noise)


def test_text_direction_raises_the_prompt_direction(registry, demo):
    [res] = vis(registry, "text_direction").visualize(demo, ["a star"], {**FAST, "steps": 160})
    assert res.target == "text:a star@layer4.0"
    assert res.activation > 3 * max(res.activation_gray, res.activation_noise, 0.0) + 0.5


def test_negative_lowers_its_target_far_below_gray_and_noise(registry, demo):
    [res] = vis(registry, "negative").visualize(demo, [ACTIVE_ON_GRAY], FAST)
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
    seeds = [vis(registry, "channel").visualize(demo, [STAR_UNIT], {**params, "seed": s})[0] for s in range(3)]
    diverse = vis(registry, "diversity").visualize(demo, [STAR_UNIT], {**params, "k": 3})
    assert [r.target for r in diverse] == [f"{STAR_UNIT}#{j}" for j in range(3)]
    plain, varied = _gram_similarity(demo, seeds, "layer4.0"), _gram_similarity(demo, diverse, "layer4.0")
    # Gram dissimilarity: diversity's images at least 5x further apart than other seeds' (about 25x
    # measured; an absolute margin of 0.3 sat at the edge of rounding: 0.99 against 0.71 or 0.68
    # depending on the oneDNN kernels and thread count)
    assert 1 - varied > 5 * (1 - plain), (plain, varied)
    assert all(r.activation > 0.5 for r in diverse)


def test_same_seed_same_image_and_snapshots(registry, demo):
    a, b = (vis(registry, "channel").visualize(demo, [STAR_UNIT], {**FAST, "thresholds": "8,16,99"})[0]
            for _ in range(2))
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert a.thresholds == [8, 16, 48] and len(a.snapshots) == 3 and len(a.loss_curve) == 48
    c = vis(registry, "channel").visualize(demo, [STAR_UNIT], {**FAST, "seed": 1})[0]
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


def test_batching_does_not_cost_quality(registry, demo):
    units = [STAR_UNIT, "layer4.0:6", "layer4.0:83", "layer3.0:10"]
    batched = vis(registry, "channel").visualize(demo, units, FAST)
    for unit, res in zip(units, batched):
        [solo] = vis(registry, "channel").visualize(demo, [unit], FAST)
        assert res.activation >= 0.9 * solo.activation, (unit, res.activation, solo.activation)


def test_no_hook_remains_also_after_an_interrupted_render(registry, demo):
    before = hooks(demo)
    relus = [m for m in demo.visual.modules() if isinstance(m, torch.nn.ReLU)]

    def interrupt(done, total, message):
        if done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        vis(registry, "channel").visualize(demo, [STAR_UNIT], {**FAST, "precision": "bf16"}, interrupt)
    assert hooks(demo) == before
    assert all("forward" not in vars(m) for m in relus)  # redirected ReLUs restored
    # the render ran on a private copy: the shared model keeps its BatchNorms, dtype and layout
    assert isinstance(demo.visual.bn1, torch.nn.BatchNorm2d) and demo.visual.layer4[0].bn3.weight.dtype == torch.float32
    assert demo.visual.conv1.weight.is_contiguous() and demo.visual.conv1.weight.dtype == torch.float32


def test_alpha_gives_rgba_and_results_round_trip(registry, demo, tmp_path):
    [res] = vis(registry, "channel").visualize(demo, [STAR_UNIT], {**FAST, "alpha": True})
    assert res.image.mode == "RGBA"
    back = FeatureVis.load(res.save(tmp_path / "vis"))
    assert back.target == STAR_UNIT and back.image.mode == "RGBA" and np.allclose(back.loss_curve, res.loss_curve)


def test_bad_input(registry, demo):
    channel = vis(registry, "channel")
    with pytest.raises(LayerError, match="no layer 'layer9'"):
        channel.visualize(demo, ["layer9:0"], FAST)
    with pytest.raises(UnitError, match="channel 600 is out of range"):
        channel.visualize(demo, ["layer4.0:600"], FAST)
    with pytest.raises(ParamError, match="parameter 'thresholds'"):
        channel.visualize(demo, [STAR_UNIT], {**FAST, "thresholds": "a,b"})
    with pytest.raises(ValueError, match="a prompt is empty"):
        vis(registry, "text_direction").visualize(demo, [" "], FAST)
    with pytest.raises(ValueError, match="takes Direction objects"):
        vis(registry, "direction").visualize(demo, [STAR_UNIT], FAST)
    with pytest.raises(ValueError, match="nothing to visualize"):
        channel.visualize(demo, [], FAST)


def test_negative_says_when_a_relu_unit_has_nowhere_to_go(registry, demo):
    [res] = vis(registry, "negative").visualize(demo, [ZERO_ON_GRAY_AND_NOISE], {**FAST, "steps": 8})
    assert res.activation_gray == res.activation_noise == 0.0 and res.activation >= 0.0
    [warning] = res.warnings
    assert "did not fall below its value on gray/noise images" in warning and "cannot go below 0" in warning
