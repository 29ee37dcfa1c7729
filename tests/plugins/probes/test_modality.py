"""The modality probe: the demo model, bad concept sets."""

from __future__ import annotations

import pytest
from PIL import Image

from mmneurons.images import FolderSource, ImageLoadError




def test_demo_model_has_multimodal_units(registry):
    from mmneurons.models import load_model

    demo = load_model("demo:shapes")
    source = registry.get("mmneurons_image_sources", "demo_shapes").create(per_cell=12, seed=99)
    probe = registry.get("mmneurons_probes", "modality")
    result = probe.run(demo, "layer4.0", source, {"top": 40})
    assert result.summary["multimodal_units"] >= 15 and result.summary["modalities"] == ["drawing", "photo", "text"]
    best = result.table("ranking")[0]
    assert best["multimodal"] and best["score"] >= 1.5
    one = probe.run(demo, best["unit"], source, {})
    assert one.summary["top_concept"] == best["concept"] and one.summary["multimodal"]
    [chart] = one.images  # the grouped bar chart: concepts x modalities
    assert chart.width > 300 and chart.height > 150 and len(one.table("unit")) == 12


def test_missing_modality_and_unlabeled_folders(registry, tmp_path, tiny_resnet):
    for concept, mods in (("star", ("photo", "text")), ("moon", ("photo",))):
        for mod in mods:
            (tmp_path / concept / mod).mkdir(parents=True)
            Image.new("RGB", (8, 8), (len(concept) * 20, 0, 0)).save(tmp_path / concept / mod / "a.png")
    probe = registry.get("mmneurons_probes", "modality")
    with pytest.raises(ImageLoadError, match="no image for moon/text"):
        probe.run(tiny_resnet, "layer3", FolderSource(tmp_path), {})
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "x.png")
    with pytest.raises(ImageLoadError, match="needs a concept and a modality"):
        probe.run(tiny_resnet, "layer3", FolderSource(flat), {})


def _write_demo_folder(root, concepts, per_cell=2):
    """``concept/form/i.png`` images of the demo's generator, for a folder source of any concept set."""
    from mmneurons.plugins.demo.data import ShapesSource, probe_specs

    source = ShapesSource(probe_specs(per_cell, 11))
    for i in range(len(source)):
        record = source.record(i)
        if record.category in concepts:
            folder = root / record.category / record.meta["form"]
            folder.mkdir(parents=True, exist_ok=True)
            source.load(i).save(folder / f"{i}.png")
    return FolderSource(root)


@pytest.mark.parametrize("concepts", [("star", "moon"), ("star", "moon", "heart")])
def test_an_unreachable_z_min_is_said_not_silently_met_by_no_unit(registry, tmp_path, concepts):
    from mmneurons.models import load_model
    from mmneurons.analysis import max_z

    assert max_z(2) == 1.0 and max_z(3) == pytest.approx(2 ** 0.5)
    probe = registry.get("mmneurons_probes", "modality")
    result = probe.run(load_model("demo:shapes"), "layer4.0:489", _write_demo_folder(tmp_path, concepts), {})
    assert result.summary["multimodal_units"] == 0
    [warning] = [w for w in result.warnings if "z_min" in w]
    assert f"with {len(concepts)} concepts no z-score can exceed {max_z(len(concepts)):.2f}" in warning
    lowered = probe.run(load_model("demo:shapes"), "layer4.0", _write_demo_folder(tmp_path / "again", concepts),
                        {"z_min": 0.7 * max_z(len(concepts))})
    assert lowered.summary["multimodal_units"] > 0 and not [w for w in lowered.warnings if "z_min" in w]
