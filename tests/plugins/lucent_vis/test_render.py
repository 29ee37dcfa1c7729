"""The render loop: warnings true to the target, redirection only for targets at exactly 0, and a
new parameterization or transform plugged in through the RenderSpec alone."""

from __future__ import annotations

import numpy as np
import torch

from mmneurons.activations import capture_layers
from mmneurons.units import Direction

from .common import FAST, ZERO_ON_GRAY_AND_NOISE, hooks, vis


def test_warnings_name_relus_only_where_they_exist_and_were_redirected():
    from mmneurons.plugins.lucent_vis import Job, target_warnings

    job = Job("t", "layer", lambda acts: acts, lambda i: None, "t")
    stuck = (0.0, 0.0, 0.0)  # reached, gray, noise
    for kind in ("vit", "resnet"):  # a ViT unit, or a direction that started below 0: nothing was redirected
        [warning] = target_warnings(job, *stuck, kind, redirected=0)
        assert "never rose above" in warning and "ReLU" not in warning and "dead" not in warning
    [warning] = target_warnings(job, *stuck, "resnet", redirected=16)
    assert "may be dead" in warning and "ReLU gradients were redirected for 16 steps" in warning
    assert target_warnings(job, 2.0, 0.5, 0.7, "vit", redirected=0) == []
    low = Job("-t", "layer", lambda acts: acts, lambda i: None, "-t", minimize=True)
    [warning] = target_warnings(low, 0.9, 0.9, 1.2, "vit", redirected=0)
    assert "did not fall below" in warning and "ReLU" not in warning
    assert target_warnings(low, 0.1, 0.9, 1.2, "vit", redirected=0) == []


def test_a_direction_that_starts_below_zero_is_not_redirected_as_dead(registry, demo, monkeypatch):
    """Redirection is for ReLU outputs that read exactly 0; a projection below zero is only negative."""
    from mmneurons.plugins.lucent_vis import redirect

    swaps = []
    real = redirect.redirected_relus

    def spy(model, enabled):
        swaps.append(enabled)
        return real(model, enabled)

    monkeypatch.setattr(redirect, "redirected_relus", spy)
    vector = np.random.default_rng(1).normal(size=512)
    gray = torch.full((1, 3, 64, 64), 0.5)
    with torch.no_grad():
        acts = capture_layers(demo, gray, ["layer4.0"])["layer4.0"]
    direction = Direction("layer4.0", -vector if float(Direction("layer4.0", vector).read(acts)[0]) > 0 else vector)
    assert float(direction.read(acts)[0]) < 0
    vis(registry, "direction").visualize(demo, [direction], {**FAST, "steps": 4})
    assert swaps and not any(swaps)
    swaps.clear()
    vis(registry, "channel").visualize(demo, [ZERO_ON_GRAY_AND_NOISE], {**FAST, "steps": 4})
    assert swaps[0] is False and any(swaps[1:])  # a ReLU unit at 0 on the starting image: redirected


class PixelImage:
    """A parameterization the loop has never seen: raw pixels through a sigmoid, one seed per image."""

    built: list = []

    def __init__(self, n, size, channels, seeds, device, decorrelate=True):
        self.logits = torch.stack([torch.randn(channels, size, size, generator=torch.Generator().manual_seed(s))
                                   for s in seeds]).to(device).requires_grad_(True)
        PixelImage.built.append((n, size, channels))

    def parameters(self):
        return [self.logits]

    def __call__(self):
        return torch.sigmoid(self.logits)


def test_a_new_parameterization_and_transform_need_no_edit_of_the_loop(demo):
    from lucent.optvis import objectives

    from mmneurons.plugins.lucent_vis import Job, RenderSpec, render
    from mmneurons.units import Unit

    seen = []

    def flip(x, gens):
        seen.append(len(gens))
        return x.flip(-1)

    unit = Unit("layer4.0", 51)
    jobs = [Job(str(unit), unit.layer, unit.read, lambda i: objectives.channel("layer4.0", 51, batch=i), str(unit))]
    PixelImage.built.clear()
    [res] = render(demo, RenderSpec(jobs=jobs, steps=6, lr=0.1, thresholds=(3,), parameterization=PixelImage,
                                    transform=flip, precision="fp32", method="pixels"))
    assert PixelImage.built == [(1, 64, 3)] and seen == [1] * 6
    assert res.method == "pixels" and res.thresholds == [3, 6] and len(res.snapshots) == 2
    pixels = np.asarray(res.image, np.float32)
    assert pixels.std() > 20  # sigmoid of unit-variance noise: far from the FFT image's smooth start
    assert res.loss_curve[-1] < res.loss_curve[0] - 0.5  # optimized through the new parameterization


def test_the_render_tower_is_built_once_kept_and_renders_as_a_fresh_one(registry, tiny_resnet, monkeypatch):
    import copy

    model, fresh = copy.deepcopy(tiny_resnet), copy.deepcopy(tiny_resnet)
    builds = []
    build = model.render_tower
    monkeypatch.setattr(model, "render_tower", lambda *a, **k: builds.append(a) or build(*a, **k))
    settings = {**FAST, "steps": 8, "thresholds": "8", "precision": "fp32"}
    first = vis(registry, "channel").visualize(model, ["layer3.0:1", "layer4.0:2"], settings)
    again = vis(registry, "channel").visualize(model, ["layer3.0:1", "layer4.0:2"], settings)
    assert len(builds) == 1 and hooks(model) == 0  # kept, and left as it was found
    other = vis(registry, "channel").visualize(fresh, ["layer3.0:1", "layer4.0:2"], settings)
    for a, b, c in zip(first, again, other, strict=True):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
        assert np.array_equal(np.asarray(a.image), np.asarray(c.image)) and a.activation == c.activation
    vis(registry, "channel").visualize(model, ["layer3.0:1"], {**settings, "precision": "bf16"})
    assert len(builds) == 2  # another precision: another tower, which replaces the first
