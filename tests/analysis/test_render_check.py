"""The path check of a render (mmneurons.analysis.render_check) on the embedded model: a render of a
multimodal unit travels like the unit's top examples; an unrelated image does not, and is warned."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmneurons.analysis.render_check import WARN_BELOW, PathBaseline, path_layers, path_scores
from mmneurons.plugins.demo.data import ShapesSource, probe_specs

STAR_UNIT = ("layer4.0", 51)  # a multimodal "star" unit (the manifest lists it)


@pytest.fixture(scope="module")
def probe_images():
    source = ShapesSource(probe_specs(4, 99))
    pixels = torch.from_numpy(np.stack([np.asarray(source.load(i), np.float32) / 255 for i in range(len(source))]))
    return pixels.permute(0, 3, 1, 2), [source.record(i).category for i in range(len(source))]


@pytest.fixture(scope="module")
def star(demo_model, probe_images):
    from mmneurons.activations import capture_layers

    pixels, _ = probe_images
    layer, channel = STAR_UNIT
    with torch.inference_mode():
        values = capture_layers(demo_model, pixels, [layer])[layer][:, channel].mean(dim=(1, 2))
    order = torch.argsort(values, descending=True)
    return pixels[order[:9]], pixels[order[-6:]]


def test_path_layers_are_the_blocks_before_the_unit(demo_model, tiny_vit, tiny_resnet):
    assert path_layers(demo_model, "layer4.0") == ["act3", "layer1.0", "layer2.0", "layer3.0"]
    assert path_layers(demo_model, "layer4.0.sae") == path_layers(demo_model, "layer4.0")
    assert path_layers(demo_model, "layer4.0", n=2) == ["layer1.0", "layer3.0"]
    assert path_layers(tiny_vit, "transformer.resblocks.1") == ["conv1", "transformer.resblocks.0"]
    assert path_layers(demo_model, "act3") == []
    with pytest.raises(ValueError, match="not one of the model's blocks"):
        path_layers(tiny_resnet, "attnpool")


def test_a_render_scores_above_unrelated_images_which_are_warned(registry, demo_model, probe_images, star):
    pixels, _ = probe_images
    top, bottom = star
    layer, channel = STAR_UNIT
    [render] = registry.get("mmneurons_visualizers", "channel").visualize(
        demo_model, [f"{layer}:{channel}"], {"steps": 128, "thresholds": "64"})
    render_px = torch.from_numpy(np.asarray(render.image, np.float32) / 255).permute(2, 0, 1)[None]
    gray = torch.full((1, 3, 64, 64), 0.5)
    baseline = PathBaseline(demo_model, pixels, path_layers(demo_model, layer))
    [mine] = baseline.scores(demo_model, render_px, top)
    others = baseline.scores(demo_model, torch.cat([bottom, gray]), top)
    assert mine.score >= WARN_BELOW and not mine.warning, mine
    assert set(mine.per_layer) == {"act3", "layer1.0", "layer2.0", "layer3.0"}
    assert all(mine.score > other.score for other in others), (mine.score, [o.score for o in others])
    assert np.mean([o.score for o in others]) < WARN_BELOW
    warned = [o for o in others if o.warning]
    assert warned and all("path score" in o.warning and "least at " in o.warning for o in warned)


def test_top_examples_beat_most_images_and_the_bottom_ones(demo_model, probe_images, star):
    """The top examples of a multimodal unit are photos, drawings and words: each is only partly like
    their mean, yet beats most reference images, and every bottom example."""
    pixels, _ = probe_images
    top, bottom = star
    scores = [s.score for s in path_scores(demo_model, STAR_UNIT[0], top, top, pixels)]
    low = [s.score for s in path_scores(demo_model, STAR_UNIT[0], bottom, top, pixels)]
    assert np.median(scores) > 0.7 and all(0.0 <= s <= 1.0 for s in scores + low)
    assert min(scores) > max(low), (scores, low)


def test_bad_input_is_refused_in_one_line(demo_model, probe_images):
    pixels, _ = probe_images
    with pytest.raises(ValueError, match="at least 2 reference images"):
        PathBaseline(demo_model, pixels[:1], ["layer1.0"])
    with pytest.raises(ValueError, match="top dataset examples"):
        PathBaseline(demo_model, pixels, ["layer1.0"]).scores(demo_model, pixels[:1], pixels[:0])
