"""``mmneurons sae train``, ``show`` and ``quality`` on the embedded model, and their one-line errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mmneurons.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_train_show_and_measure_an_sae(tmp_path):
    path = tmp_path / "layer4.0.sae.safetensors"
    out = invoke("sae", "train", "demo:shapes", "--layer", "layer4.0", "--source", "demo_shapes", "-s", "per_cell=2",
                 "--features", 64, "--k", 8, "--epochs", 1, "--batch-size", 64, "--eval-source-param", "seed=5",
                 "--out", path)
    assert out.exit_code == 0, out.output
    assert "SAE of layer4.0: 64 features, k=8" in out.output and "zero-shot model -> reconstructed" in out.output
    assert path.is_file() and not list(tmp_path.glob("*.partial.pt"))      # the checkpoint is gone
    shown = json.loads(invoke("sae", "show", path).output)
    assert shown["model_id"] == "demo:shapes" and shown["training"]["epochs"] == 1
    assert shown["quality"]["positions"] == 72 * 4 and shown["data"].startswith("demo_shapes per_cell=2")
    measured = invoke("sae", "quality", path, "--source", "demo_shapes", "-s", "per_cell=1", "--labels", "")
    assert measured.exit_code == 0 and measured.output.startswith("FVU ") and "photo" in measured.output


def test_clear_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    out = invoke("sae", "train", "demo:shapes", "--layer", "layer4.0", "--source", "demo_shapes", "--features", 8,
                 "--k", 2, "--out", tmp_path / "notes.txt")
    assert out.exit_code == 1 and "is not an SAE file" in out.output and (tmp_path / "notes.txt").read_text() == "mine"
    out = invoke("sae", "train", "demo:shapes", "--layer", "layer4.0", "--features", 8, "--k", 2, "--out",
                 tmp_path / "a.safetensors")
    assert out.exit_code == 2 and "--images DIR or --source NAME" in out.output
    out = invoke("sae", "train", "demo:shapes", "--layer", "layer4.0", "--source", "demo_shapes", "--features", 8,
                 "--k", 9, "--out", tmp_path / "a.safetensors")
    assert out.exit_code == 1 and "need 1 <= k <= features" in out.output
    out = invoke("sae", "show", tmp_path / "missing.safetensors")
    assert out.exit_code == 1 and "does not exist" in out.output
