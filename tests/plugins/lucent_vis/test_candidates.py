"""The render candidates of issue 22 (MACO, strong transforms, the centered window): each plugs into
the render loop through the visualizers' parameters and raises its target over gray and noise as
the existing ones do; each keeps its own promise (fixed magnitude, paper transform unchanged,
nothing outside the window)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmneurons.plugins.lucent_vis.maco import MacoImage, magnitude_of, power_law
from mmneurons.plugins.lucent_vis.transform import TRANSFORMS, affine_transform, paper_transform
from mmneurons.plugins.lucent_vis.window import RADIUS, disk, windowed

from .common import FAST, STAR_UNIT, vis


@pytest.mark.parametrize("params", [
    {"parameterization": "maco", "window": False, "lr": 0.1},   # a phase moves slowly at lr 0.05 (benchmarks)
    {"transforms": "strong", "window": False},
    {"decay": 2.0, "window": False},
    {"window": True},
    {"parameterization": "maco", "window": True, "transforms": "strong", "lr": 0.1},
], ids=["maco", "strong", "decay", "window", "maco, window and strong"])
def test_each_candidate_raises_its_target_far_beyond_gray_and_noise(registry, demo, params):
    """The bar of the existing objectives (test_visualizers.py), at twice their fast steps: a
    candidate constrains the image (a disk, a fixed magnitude, a slow high-frequency rate) or moves
    it more, and at 48 steps the window reaches 3.1x, not 3x + 0.5, on a 4x4 layer3.0 unit."""
    for res in vis(registry, "channel").visualize(demo, [STAR_UNIT, "layer3.0:10"], {**FAST, "steps": 96, **params}):
        baseline = max(res.activation_gray, res.activation_noise, 0.0)
        assert res.activation > 3 * baseline + 0.5, (res.target, res.activation, baseline)
        assert not res.warnings
        assert res.params["parameterization"] == params.get("parameterization", "fft")


def test_maco_changes_only_the_phase():
    image = MacoImage(2, 32, 3, [1, 2], torch.device("cpu"), decorrelate=False)
    magnitude = image.magnitude.clone()
    opt = torch.optim.Adam(image.parameters(), lr=0.5)
    for _ in range(3):
        loss = -image()[:, 0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = image().detach()
    assert x.shape == (2, 3, 32, 32) and 0 < float(x.min()) and float(x.max()) < 1
    # before the sigmoid each image is the fixed magnitude with new phases: its spectrum's magnitude,
    # relative to its total, is the power law's, whatever the optimizer did (the columns strictly
    # inside the half spectrum: a real image makes its first and last column symmetric)
    logits = torch.logit(x.double())
    spectrum = torch.fft.rfft2(logits - logits.mean(dim=(2, 3), keepdim=True), norm="ortho").abs()[..., 1:-1]
    want = magnitude[0].double()[..., 1:-1]
    for i in range(2):
        for c in range(3):
            got = spectrum[i, c]
            assert torch.allclose(got / got.norm(), want[c] / want[c].norm(), atol=1e-5)
    assert image.phase.grad is not None and torch.equal(image.magnitude, magnitude)


def test_maco_images_depend_on_their_seed_only():
    a = MacoImage(2, 16, 3, [5, 6], torch.device("cpu"))()
    b = MacoImage(1, 16, 3, [6], torch.device("cpu"))()
    assert torch.equal(a[1], b[0]) and not torch.equal(a[0], a[1])


def test_magnitude_of_images_fits_maco_and_rejects_another_size():
    images = torch.rand(4, 3, 16, 16)
    magnitude = magnitude_of(images)
    assert magnitude.shape == (3, 16, 9) and float(magnitude[:, 0, 0].abs().max()) < 1e-5
    MacoImage(1, 16, 3, [0], torch.device("cpu"), spectrum=magnitude)()
    with pytest.raises(ValueError, match="does not fit"):
        MacoImage(1, 32, 3, [0], torch.device("cpu"), spectrum=magnitude)
    assert power_law(16)[0, 0] == 0 and power_law(16)[1, 0] > power_law(16)[4, 0]


def test_the_paper_transform_is_the_affine_family_at_its_values():
    x = torch.rand(3, 3, 64, 64)
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2, 3)]  # noqa: E731
    assert torch.equal(paper_transform(x, gens()), affine_transform((0.67, 1.03), 20, 2)(x, gens()))
    assert set(TRANSFORMS) == {"clip", "strong", "none"}
    assert not torch.equal(TRANSFORMS["strong"](x, gens()), paper_transform(x, gens()))


def test_the_window_is_the_channel_default_and_shows_nothing_but_gray_outside_its_disk(registry, demo):
    [res] = vis(registry, "channel").visualize(demo, [STAR_UNIT], FAST)
    assert res.params["window"] is True and res.params["transforms"] == "clip"
    pixels = np.asarray(res.image.convert("RGB"), np.float32)
    outside = disk(64, torch.device("cpu"))[0, 0].numpy() == 0
    assert outside.sum() > 0.4 * 64 * 64
    assert np.abs(pixels[outside] - 127.5).max() <= 1.0           # mid-gray, to 8-bit rounding
    inside = disk(64, torch.device("cpu"), radius=RADIUS - 0.1)[0, 0].numpy() == 1
    assert pixels[inside].std() > 10                              # the render itself


def test_a_windowed_image_sees_random_colors_outside_while_optimized():
    image = windowed()(2, 32, 3, [1, 2], torch.device("cpu"))
    optimized = image()
    with torch.no_grad():
        shown = image()
    corner = (slice(None), slice(None), 0, 0)
    assert optimized.requires_grad and not torch.allclose(optimized[corner], shown[corner])
    assert torch.allclose(shown[corner], torch.full_like(shown[corner], 0.5))
