"""``mmneurons facet train`` and ``show``, then a faceted render from the command line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mmneurons.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_train_show_and_render_with_a_facet(tmp_path):
    path = tmp_path / "text.facet.json"
    out = invoke("facet", "train", "demo:shapes", "--facet", "text", "--layer", "layer3.0", "--source", "demo_shapes",
                 "-s", "per_cell=2", "--out", path)
    assert out.exit_code == 0, out.output
    assert "facet 'text' on layer3.0: held-out accuracy" in out.output and path.is_file()
    shown = invoke("facet", "show", path)
    assert shown.exit_code == 0 and json.loads(shown.output)["coef"] == "[256 values]"
    render = invoke("visualize", "demo:shapes", "layer4.0:489", "--method", "faceted", "-p", f"facet={path}",
                    "-p", "steps=4", "--out", tmp_path / "vis")
    assert render.exit_code == 0, render.output
    assert list((tmp_path / "vis").rglob("*.png"))
    feature = invoke("visualize", "demo:shapes", "layer4.0.sae:481", "--method", "faceted", "-p", f"facet={path}",
                     "-p", "steps=4", "--out", tmp_path / "feature")      # an SAE feature, faceted like a unit
    assert feature.exit_code == 0 and "layer4.0.sae:481 [text]: activation" in feature.output, feature.output


def test_clear_errors(tmp_path):
    out = invoke("facet", "train", "--facet", "face", "--layer", "layer3.0", "--source", "demo_shapes",
                 "-s", "per_cell=1", "--out", tmp_path / "f.json")
    assert out.exit_code == 1 and "Error: facet 'face': no image" in out.output
    out = invoke("facet", "train", "--facet", "text", "--layer", "layer3.0", "--out", tmp_path / "f.json")
    assert out.exit_code == 2 and "--images DIR or --source NAME" in out.output
    (tmp_path / "bad.json").write_text("{")
    out = invoke("facet", "show", tmp_path / "bad.json")
    assert out.exit_code == 1 and "cannot be read" in out.output
