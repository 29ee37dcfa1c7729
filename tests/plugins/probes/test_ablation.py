"""The ablation probe on the embedded model: the paper's check (a concept's most multimodal units
removed hurt that concept, in every form), the probe's tables, a layer sweep, bad targets."""

from __future__ import annotations

import numpy as np
import pytest

from mmneurons.plugins.demo.paper import ablation_check
from mmneurons.units import UnitError


@pytest.fixture(scope="module")
def shapes():
    from mmneurons.registry import get_registry

    return get_registry().get("mmneurons_image_sources", "demo_shapes").create(per_cell=10)


def test_removing_a_concepts_multimodal_units_hurts_that_concept_in_every_form(demo_model, shapes):
    rows = ablation_check(demo_model, shapes, units=5, mode="zero")
    assert [r["concept"] for r in rows][:3] == ["arrow", "circle", "cross"] and len(rows) == 12
    # the true-class logit drops at least 3x more than the other concepts' mean (the goal: 9 of 12)
    selective = [r["concept"] for r in rows if r["logit_selectivity"] >= 3]
    assert len(selective) >= 9, rows
    # multimodal: where the concept's own logit drops clearly, it drops in each of the three forms
    for r in rows:
        if r["logit_drop"] > 0.3:
            assert all(f["logit_drop"] > 0 for f in r["by_form"].values()), r
    # accuracy saturates (1.0 on most concepts), so its goal (3x for 9 of 12) moves with the sample:
    # 9 of 12 on docs/paper.md's held-out images, 3 of 12 on these; the logit above is the measure


def test_the_probe_reports_classes_groups_and_the_most_hurt(registry, demo_model):
    shapes = registry.get("mmneurons_image_sources", "demo_shapes").create(per_cell=4)
    probe = registry.get("mmneurons_probes", "ablation")
    result = probe.run(demo_model, "layer4.0:489,147,343,465,51", shapes, {"top": 3})
    assert result.summary["most_hurt"] == "star" and result.summary["most_hurt_logit_drop"] > 0.5
    assert len(result.table("classes")) == 12 and len(result.table("most_hurt")) == 3
    assert {r["group"] for r in result.table("groups")} == {"drawing", "photo", "text"}
    assert set(result.summary["logit_drop_by_group"]) == {"drawing", "photo", "text"}
    star = next(r for r in result.table("classes") if r["class"] == "star")
    assert star["logit_drop"] == pytest.approx(star["logit_before"] - star["logit_after"])
    mean = probe.run(demo_model, "layer4.0:489", shapes, {"mode": "mean"})
    assert mean.summary["mode"] == "mean" and mean.summary["units"] == "layer4.0:489"


def test_a_layer_sweep_ranks_units_by_the_class_they_hurt_most(registry, tiny_resnet):
    images = registry.get("mmneurons_image_sources", "demo_shapes").create(per_cell=1, size=tiny_resnet.image_size)
    result = registry.get("mmneurons_probes", "ablation").run(tiny_resnet, "layer1.0", images, {"top": 0})
    rows = result.table("units")
    assert len(rows) == tiny_resnet.layer_info("layer1.0").channels == 64
    drops = [r["logit_drop"] for r in rows]
    assert drops == sorted(drops, reverse=True) and np.isfinite(drops).all()


def test_bad_targets_are_refused(registry, demo_model, shapes):
    probe = registry.get("mmneurons_probes", "ablation")
    with pytest.raises(UnitError, match="LAYER:C1,C2"):
        probe.run(demo_model, "layer4.0:1,x", shapes, {})
    with pytest.raises(UnitError, match="out of range"):
        probe.run(demo_model, "layer4.0:1,600", shapes, {})
