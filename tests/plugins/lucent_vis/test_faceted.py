"""Faceted feature visualization: the facet term steers a unit's render toward its facet while
the unit stays active; ResNet and ViT, fp32 and bf16; the facet file is required and checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmneurons.analysis.facets import FacetError, train_facet

from .common import vis

UNITS = ["layer4.0:489", "layer4.0:147", "layer4.0:468", "layer4.0:251", "layer4.0:343", "layer4.0:69"]
SETTINGS = {"steps": 128, "thresholds": ""}


@pytest.fixture(scope="module")
def facet_files(tmp_path_factory, demo):
    from mmneurons.registry import get_registry

    images = get_registry().get("mmneurons_image_sources", "demo_shapes").create(per_cell=4, seed=5)
    folder = tmp_path_factory.mktemp("facets")
    facets = {form: train_facet(demo, images, form, "layer3.0") for form in ("text",)}
    return {form: (facet, facet.save(folder / f"{form}.json")) for form, facet in facets.items()}


def test_the_facet_moves_renders_toward_it_and_keeps_the_unit_active(registry, demo, facet_files):
    form = "text"  # every facet takes the same path; docs/paper.md measures all three on 31 units
    facet, path = facet_files[form]
    plain = vis(registry, "channel").visualize(demo, UNITS, {**SETTINGS, "window": False})  # faceted's frame
    faceted = vis(registry, "faceted").visualize(demo, UNITS, {**SETTINGS, "facet": str(path)})
    assert faceted[0].params["window"] is False
    assert [r.of for r in faceted] == UNITS and faceted[0].target == f"{UNITS[0]} [{form}]"
    assert faceted[0].params["facet"] == str(path) and faceted[0].method == "faceted"

    def score(results):
        return facet.score(demo, torch.stack([demo.pixels(r.image) for r in results]))

    moved = score(faceted) > score(plain)
    assert moved.mean() >= 4 / 6, (score(plain), score(faceted))
    # the unit is still what the render is about: its activation stays near the plain render's
    ratio = np.array([r.activation / p.activation for r, p in zip(faceted, plain)])
    assert np.median(ratio) >= 0.8 and ratio.min() >= 0.3, ratio


def test_bf16_and_a_vit_render_through_the_facet(registry, demo, facet_files, tiny_vit):
    _, path = facet_files["text"]
    [r] = vis(registry, "faceted").visualize(demo, UNITS[:1], {"steps": 32, "precision": "bf16", "facet": str(path)})
    assert r.activation > r.activation_gray + 0.5
    from mmneurons.registry import get_registry

    images = get_registry().get("mmneurons_image_sources", "demo_shapes").create(per_cell=2, size=tiny_vit.image_size)
    facet = train_facet(tiny_vit, images, "text", "transformer.resblocks.0")
    vit_path = facet.save(path.parent / "vit.json")
    plain = vis(registry, "channel").visualize(tiny_vit, ["transformer.resblocks.1:3"], {"steps": 8})
    [r] = vis(registry, "faceted").visualize(tiny_vit, ["transformer.resblocks.1:3"],
                                             {"steps": 8, "facet": str(vit_path), "facet_weight": 4.0})
    assert np.isfinite(r.activation) and not np.array_equal(np.asarray(r.image), np.asarray(plain[0].image))


def test_a_facet_is_required_and_must_be_the_models(registry, demo, facet_files, tiny_resnet):
    faceted = vis(registry, "faceted")
    with pytest.raises(ValueError, match="needs a facet file"):
        faceted.visualize(demo, UNITS[:1], {"steps": 2})
    _, path = facet_files["text"]
    with pytest.raises(FacetError, match="trained on demo:shapes"):
        faceted.visualize(tiny_resnet, ["layer4.0:1"], {"steps": 2, "facet": str(path)})
    with pytest.raises(ValueError, match="does not feed"):
        faceted.visualize(demo, ["layer2.0:1"], {"steps": 2, "facet": str(path)})
