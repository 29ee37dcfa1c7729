"""Concept decomposition on the embedded model: quality against the number of units, the paper's
causal check, the top units' own concepts (measured against the goal), a layer column."""

from __future__ import annotations

import pytest

from mmneurons.plugins.demo.paper import decomposition_check


@pytest.fixture(scope="module")
def shapes():
    from mmneurons.registry import get_registry

    return get_registry().get("mmneurons_image_sources", "demo_shapes").create(per_cell=10)


@pytest.mark.parametrize("method", ["gradient", "fit"])
def test_each_concept_decomposes_and_its_top_unit_raises_it_most(demo_model, shapes, method):
    rows = decomposition_check(demo_model, shapes, method=method, units=10)
    assert len(rows) == 12
    quality = "cosine" if method == "gradient" else "r2"
    # the goal: raising the top unit on a blank image raises the concept's logit most, for 10 of 12
    assert sum(r["causal_rank"] == 0 for r in rows) >= 10, rows
    if method == "gradient":  # 5 of 512 units reproduce a 64-d direction closely
        assert min(r[f"{quality}_at_5"] for r in rows) >= 0.9
    assert all(r[f"{quality}_at_10"] >= r[f"{quality}_at_5"] - 1e-9 for r in rows)
    # the top unit is mostly one of the concept's own units; the goal "3 of the top 5 are the
    # concept's" is not reached (the pursuit picks complementary units): docs/paper.md
    assert sum(r["top_categories"][0] == r["concept"] for r in rows) >= 5


def test_the_probe_reports_units_quality_and_the_causal_check(registry, demo_model, shapes):
    probe = registry.get("mmneurons_probes", "concept_decomposition")
    result = probe.run(demo_model, "diamond", shapes, {"units": 6})
    units, quality = result.table("units"), result.table("quality")
    assert len(units) == 6 and [q["units"] for q in quality] == [1, 2, 3, 4, 5, 6]
    assert sum(u["share"] for u in units) == pytest.approx(1.0)
    assert all(u["weight"] >= 0 for u in units) and units[0]["top_category"] == "diamond"
    assert [r["class"] for r in result.table("causal")][0] == result.summary["raised_most"]
    assert len(result.table("causal")) == 12 and result.images


def test_on_a_layer_each_unit_lists_the_concepts_it_builds(registry, demo_model, shapes):
    probe = registry.get("mmneurons_probes", "concept_decomposition")
    result = probe.run(demo_model, "layer4.0", shapes, {"units": 3, "compare": "star,moon"})
    rows = result.table("units")
    assert result.summary["concepts"][:2] == ["star", "moon"] and len(result.summary["concepts"]) == 12
    assert 12 <= len(rows) <= 36 and all(r["unit"].startswith("layer4.0:") for r in rows)
