"""The shipped demo model: it loads offline, is verified, and still does what its manifest says."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mmneurons.models import ModelLoadError, load_model
from mmneurons.plugins.demo.evaluate import evaluate
from mmneurons.plugins.demo.plugin import ASSETS, DemoProvider
from mmneurons.models import build_clip

MANIFEST = json.loads((ASSETS / "manifest.json").read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return DemoProvider().load("shapes", "cpu")


def test_default_model_is_the_demo_and_loads_offline(registry):
    model = load_model()  # MMNEURONS_OFFLINE=1 in the test session
    assert model.model_id == "demo:shapes" and model.kind == "resnet" and model.image_size == 64
    assert {layer.name for layer in model.layers()} >= {"layer4.0", "attnpool"}
    assert "demo:shapes" in registry.get("mmneurons_model_providers", "demo").list_models()


def test_manifest_records_config_seed_data_and_checksum():
    assert MANIFEST["train"]["seed"] == 0 and MANIFEST["train"]["images"] > 0
    assert MANIFEST["model_cfg"]["vision_cfg"]["layers"] == [1, 1, 1, 1]
    assert len(MANIFEST["weights"]["sha256"]) == 64
    assert (ASSETS / MANIFEST["weights"]["file"]).stat().st_size < 8 * 2**20


def test_tampered_weights_fail_with_a_clear_message(tmp_path):
    shutil.copytree(ASSETS, tmp_path / "assets")
    weights = tmp_path / "assets" / MANIFEST["weights"]["file"]
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="failed its checksum.*changed or corrupted"):
        DemoProvider(tmp_path / "assets").load("shapes", "cpu")
    weights.unlink()
    with pytest.raises(ModelLoadError, match="is missing"):
        DemoProvider(tmp_path / "assets").load("shapes", "cpu")
    with pytest.raises(ModelLoadError, match="unknown demo model 'demo:nope'; demo models: demo:shapes"):
        DemoProvider().load("nope", "cpu")


def test_the_shipped_evaluation_holds_on_a_small_held_out_set(demo):
    """Re-check the manifest's claims on fresh images (another seed, fewer per cell)."""
    controls = []
    for seed in range(2):
        torch.manual_seed(seed)
        controls.append(type(demo)(build_clip(MANIFEST["model_cfg"]), demo.tokenizer, model_id="control",
                                   image_size=64, mean=demo.mean, std=demo.std))
    metrics = evaluate(demo, per_cell=12, attack_per_concept=12, seed=12345, permutations=10, controls=controls)
    for form in ("photo", "drawing", "text"):
        assert metrics["zero_shot"][form] >= 0.9, metrics["zero_shot"]
    mm = metrics["multimodal"]
    assert mm["count"] >= 5 * mm["null_mean"] and mm["count"] > mm["null_max"], mm
    # the random-init control is below but not far below in raw counts: its units all prefer "ring"
    # (a low-level cue shared by the ring's photo, drawing and word); the trained units span concepts
    assert metrics["random_init_control"]["mean"] * 2 <= mm["count"], metrics["random_init_control"]
    assert len(mm["by_concept"]) >= 5, mm["by_concept"]
    assert metrics["typographic_attack"]["classified_as_written_word"] >= 0.3
    shipped = MANIFEST["evaluation"]
    assert shipped["multimodal"]["count"] >= 5 * shipped["multimodal"]["null_mean"]
    assert all(shipped["zero_shot"][f] >= 0.9 for f in ("photo", "drawing", "text"))
