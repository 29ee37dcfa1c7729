"""The command line: listings, the activation scan end to end, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mmneurons.results import TopKActivations
from mmneurons.cli import main

from .helpers import write_random_images


@pytest.fixture
def run(registry):
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_plugins_lists_the_builtins(run):
    out = run("plugins")
    assert out.exit_code == 0
    assert "openclip_models (built-in): mmneurons_model_providers" in out.output
    rows = json.loads(run("plugins", "--json").output)
    assert {"openclip_models", "image_sources"} <= {r["name"] for r in rows}


def test_models_lists_open_clip_tags(run):
    out = json.loads(run("models", "--json").output)
    assert "openclip:RN50x4@openai" in out["openclip"]


def test_layers_of_a_local_checkpoint(run, tiny_checkpoint):
    out = run("layers", f"openclip:{tiny_checkpoint}", "--json")
    assert out.exit_code == 0
    rows = {r["name"]: r["shape"] for r in json.loads(out.output)}
    assert rows["layer4.0"] == [512, 2, 2]


def test_activations_end_to_end(run, tmp_path, tiny_checkpoint):
    images = write_random_images(tmp_path / "imgs", 6)
    (images / "broken.png").write_bytes(b"nope")
    out = run("activations", f"openclip:{tiny_checkpoint}", "--layer", "layer3", "--images", images,
              "--top-k", "3", "--bottom", "--out", tmp_path / "res")
    assert out.exit_code == 0, out.output
    assert "scanned 6 images (1 skipped, fp32)" in out.output and "skipped broken.png" in out.output
    res = TopKActivations.load(tmp_path / "res")
    assert res.top_values.shape == (256, 3) and res.bottom_values.shape == (256, 3) and res.layer == "layer3"
    assert not (tmp_path / "res.partial.pt").exists()  # the resume checkpoint is gone once the scan is done


@pytest.mark.parametrize("args, message", [
    (["layers", "openclip:RN50x4@openai"], "not in the local cache"),
    (["layers", "openclip:NOPE@x"], "unknown open_clip model 'NOPE'"),
    (["activations", "CKPT", "--layer", "layer9", "--images", ".", "--out", "o"], "has no layer 'layer9'"),
    (["activations", "CKPT", "--layer", "layer3", "--images", "/no/dir", "--out", "o"], "does not exist"),
])
def test_user_errors_are_one_line(run, tiny_checkpoint, args, message):
    args = [f"openclip:{tiny_checkpoint}" if a == "CKPT" else a for a in args]
    out = run(*args)
    assert out.exit_code == 1
    assert message in out.output and "Traceback" not in out.output


def test_images_or_words_is_required(run, tiny_checkpoint):
    out = run("activations", f"openclip:{tiny_checkpoint}", "--layer", "layer3", "--out", "o")
    assert out.exit_code == 2 and "exactly one of --images DIR, --words FILE or --source NAME" in out.output


def test_activations_over_webdataset_shards_at_a_chosen_precision(run, tmp_path, tiny_checkpoint, webdataset_shards):
    shards, _ = webdataset_shards
    out = run("activations", f"openclip:{tiny_checkpoint}", "--layer", "layer3", "--source", "webdataset",
              "-s", f"path={shards}/shard-{{00000..00001}}.tar", "--precision", "bf16", "--top-k", "2",
              "--out", tmp_path / "res")
    assert out.exit_code == 0, out.output
    assert "scanned 40 images (0 skipped, bf16)" in out.output
    res = TopKActivations.load(tmp_path / "res")
    assert res.precision == "bf16" and res.image_ids[0] == "shard-00000.tar/sample0000"
    assert res.categories[:2] == ["0", "1"]
    out = run("activations", f"openclip:{tiny_checkpoint}", "--layer", "layer3", "--source", "webdataset",
              "-s", f"path={shards}", "--precision", "fp16", "--out", tmp_path / "res2")
    assert out.exit_code == 1 and "fp16 needs a GPU" in out.output and "Traceback" not in out.output


def test_attribute_end_to_end(run, tmp_path, tiny_checkpoint):
    img = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(img)
    model = f"openclip:{tiny_checkpoint}"
    out = run("attribute", model, img, "--label", "moon", "--labels", "star,moon,ring", "--method", "ig",
              "-p", "steps=16", "--out", tmp_path / "ig")
    assert out.exit_code == 0, out.output
    assert "label:moon = " in out.output and "convergence delta" in out.output
    from mmneurons.results import AttributionMap

    res = AttributionMap.load(tmp_path / "ig" / "000-x")
    assert res.attribution.shape == (3, 64, 64) and res.overlay.size == (64, 64) and res.params["steps"] == 16
    out = run("attribute", model, img, "--prompt", "a red star", "--method", "gradcam", "--out", tmp_path / "cam")
    assert out.exit_code == 0, out.output


@pytest.mark.parametrize("args, message", [
    (["--target", "layer3:0", "--label", "x"], "exactly one of --target, --label"),
    (["--label", "x"], "--label needs --labels"),
    (["--target", "layer3:0", "--method", "nope"], "no attributor named 'nope'"),
    (["--target", "layer3:0", "-p", "steps"], "write NAME=VALUE"),
    (["--target", "layer3:0", "-p", "stps=3"], "unknown parameter(s) of attributor 'ig': stps"),
    (["--label", "dog", "--labels", "cat,cow"], "'dog' is not among the labels"),
])
def test_attribute_errors(run, tmp_path, tiny_checkpoint, args, message):
    img = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(img)
    out = run("attribute", f"openclip:{tiny_checkpoint}", img, *args, "--out", tmp_path / "o")
    assert out.exit_code in (1, 2) and message in out.output, out.output


def test_probe_command(run, tmp_path):
    out = run("probe", "neuron_search", "demo:shapes", "a star", "-p", "top=3", "--out", tmp_path / "ns")
    assert out.exit_code == 0, out.output
    assert '"layer": "layer4.0"' in out.output and "units:" in out.output and "unit=layer4.0:" in out.output
    out = run("probe", "modality", "demo:shapes", "layer4.0", "--source", "demo_shapes", "-s", "per_cell=4",
              "--out", tmp_path / "mod")
    assert out.exit_code == 0, out.output
    assert "multimodal_units" in out.output
    from mmneurons.results import ProbeResult

    assert ProbeResult.load(tmp_path / "mod").summary["modalities"] == ["drawing", "photo", "text"]
    bad = run("probe", "modality", "demo:shapes", "layer4.0", "--source", "demo_shapes", "-s", "forms=nope",
              "--out", tmp_path / "x")
    assert bad.exit_code == 1 and "parameter 'forms' got 'nope'" in bad.output
    bad = run("probe", "nope", "demo:shapes", "layer4.0", "--out", tmp_path / "x")
    assert bad.exit_code == 1 and "no probe named 'nope'" in bad.output


def test_visualize_command(run, tmp_path):
    out = run("visualize", "demo:shapes", "layer4.0:51", "layer3.0:10", "-p", "steps=24", "-p", "lr=0.05",
              "--out", tmp_path / "vis")
    assert out.exit_code == 0, out.output
    assert "layer4.0:51: activation" in out.output
    from mmneurons.results import FeatureVis

    res = FeatureVis.load(tmp_path / "vis" / "000-layer4.0_51")
    assert res.image.size == (64, 64) and res.params["steps"] == 24
    bad = run("visualize", "demo:shapes", "layer4.0:51", "--method", "chanel", "--out", tmp_path / "x")
    assert bad.exit_code == 1 and "did you mean 'channel'" in bad.output


def test_visualize_takes_its_methods_parameters_as_options(run, tmp_path):
    out = run("visualize", "demo:shapes", "layer4.0:5", "--steps", "3", "--thresholds", "2", "--out", tmp_path / "v")
    assert out.exit_code == 0, out.output
    from mmneurons.results import FeatureVis

    res = FeatureVis.load(tmp_path / "v" / "000-layer4.0_5")
    assert res.params["steps"] == 3 and res.thresholds == [2, 3] and res.params["lr"] == 0.02
    out = run("visualize", "demo:shapes", "layer4.0:5", "--method", "diversity", "--k", "2", "--steps", "2",
              "--out", tmp_path / "d")
    assert out.exit_code == 0 and "layer4.0:5#1" in out.output, out.output
    twice = run("visualize", "demo:shapes", "layer4.0:5", "--steps", "3", "-p", "steps=4", "--out", tmp_path / "t")
    assert twice.exit_code == 2 and "steps given both as an option and with -p" in twice.output
    bad = run("visualize", "demo:shapes", "layer4.0:5", "--steps", "0", "--out", tmp_path / "b")
    assert bad.exit_code == 2 and "1<=x<=100000" in bad.output
    unknown = run("visualize", "demo:shapes", "layer4.0:5", "--k", "2", "--out", tmp_path / "k")
    assert unknown.exit_code == 2 and "No such option '--k': visualizer 'channel' takes --steps, --lr" in unknown.output


@pytest.mark.parametrize("args, shown", [
    (("visualize", "--help"), ["--steps INTEGER RANGE", "optimization steps", "[default: 512;", "1<=x<=100000]",
                               "visualizer 'channel'"]),
    (("visualize", "--method", "diversity", "--help"), ["--k INTEGER RANGE", "[default: 4; 2<=x<=64]"]),
    (("probe", "modality", "--help"), ["--z-min FLOAT RANGE", "[default: 1.5; x>=0.0]", "probe 'modality'"]),
    (("probe", "--help"), ["name one to see them here"]),
    (("attribute", "--help"), ["--steps INTEGER RANGE", "attributor 'ig'"]),
    (("attribute", "--method", "occlusion", "--help"), ["--window", "attributor 'occlusion'"]),
])
def test_help_shows_the_chosen_plugins_parameters(run, args, shown):
    out = run(*args)
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    for piece in shown:
        assert " ".join(piece.split()) in text, (piece, out.output)


def test_probe_options_reach_the_plugin_typed(run, echo):
    out = run("probe", "echo", "demo:shapes", "layer4.0", "--scale", "3", "--loud")
    assert out.exit_code == 0, out.output
    assert echo.received == [{"scale": 3, "loud": True}]


def test_plugins_params_lists_every_parameter(run):
    out = run("plugins", "--params", "channel")
    assert out.exit_code == 0, out.output
    assert "visualizer channel (lucent_vis):" in out.output and "--steps" in out.output
    assert "default 512; an int between 1 and 100000. optimization steps" in " ".join(out.output.split())
    rows = json.loads(run("plugins", "--params", "--json").output)
    kinds = {row["kind"] for row in rows}
    assert {"visualizer", "probe", "attributor", "image_source"} <= kinds
    steps = next(p for row in rows if row["name"] == "channel" for p in row["params"] if p["name"] == "steps")
    assert steps == {"name": "steps", "type": "int", "default": 512, "min": 1, "max": 100000, "choices": None,
                     "optional": False, "help": "optimization steps"}
    missing = run("plugins", "--params", "nope")
    assert missing.exit_code == 1 and "no plugin object is called 'nope'" in missing.output


def test_demo_samples_command(run, tmp_path):
    out = run("demo", "samples", "--out", tmp_path / "s.png", "--scale", "1")
    assert out.exit_code == 0, out.output
    img = Image.open(tmp_path / "s.png")
    assert img.size == (12 * 66, 4 * 66)  # a column per concept; photo, drawing, text and attack rows


def test_demo_evaluate_writes_only_when_asked_and_train_needs_out(run, tmp_path):
    import shutil

    from mmneurons.plugins.demo.plugin import ASSETS

    folder = tmp_path / "assets"
    shutil.copytree(ASSETS, folder)
    before = (folder / "manifest.json").read_text()
    out = run("demo", "evaluate", "--folder", folder, "--per-cell", "2")
    assert out.exit_code == 0, out.output
    assert "multimodal units" in out.output
    assert (folder / "manifest.json").read_text() == before
    out = run("demo", "evaluate", "--folder", folder, "--per-cell", "2", "--write")
    assert out.exit_code == 0, out.output
    assert json.loads((folder / "manifest.json").read_text())["evaluation"]["held_out"]["per_cell"] == 2
    assert run("demo", "train").exit_code == 2  # --out is required: never overwrite the shipped model by accident


class _EchoProbe:
    """A third-party probe that does not resolve its own parameters: it gets what the CLI hands it."""

    kind, name, description, targets, source = "probe", "echo", "Echo its parameters.", ("layer",), "none"

    def __init__(self):
        from mmneurons.params import Param

        self.params = (Param("scale", "int", 1, min=1), Param("loud", "bool", False))
        self.received = []

    def supports(self, model):
        return True

    def run(self, model, target, source, params, progress):
        from mmneurons.results import ProbeResult

        self.received.append(params)
        return ProbeResult(probe=self.name, model_id=model.model_id, target=str(target),
                           summary={"scaled": "ab" * params["scale"]})


@pytest.fixture
def echo(registry):
    from mmneurons.hookspecs import hookimpl

    probe = _EchoProbe()

    class Plugin:
        @hookimpl
        def mmneurons_probes(self):
            return [probe]

    registry.register(Plugin(), name="echo_plugin")
    return probe


def test_plugins_receive_typed_parameters_from_the_command_line(run, echo):
    out = run("probe", "echo", "demo:shapes", "layer4.0", "-p", "scale=2", "-p", "loud=yes")
    assert out.exit_code == 0, out.output
    assert echo.received == [{"scale": 2, "loud": True}] and type(echo.received[0]["scale"]) is int
    assert '"scaled": "abab"' in out.output  # not "ab" * "2", which would have raised inside the plugin


@pytest.mark.parametrize("pair, message", [
    ("scal=2", "unknown parameter(s) of probe 'echo': scal; known: loud, scale"),
    ("scale=two", "parameter 'scale' got 'two'; allowed: an int >= 1"),
    ("scale=0", "parameter 'scale' got 0; allowed: an int >= 1"),
])
def test_bad_plugin_parameters_are_refused_before_the_plugin_runs(run, echo, pair, message):
    out = run("probe", "echo", "demo:shapes", "layer4.0", "-p", pair)
    assert out.exit_code == 1 and message in out.output and "Traceback" not in out.output, out.output
    assert echo.received == []


def test_a_probe_without_out_prints_its_result_and_saves_nothing(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = run("probe", "neuron_search", "demo:shapes", "a star", "-p", "top=3")
    assert out.exit_code == 0, out.output
    assert "units:" in out.output and "unit=layer4.0:" in out.output and "->" not in out.output
    assert list(tmp_path.iterdir()) == []


def test_unit_contributions_prints_its_ranking(run, tmp_path):
    out = run("probe", "unit_contributions", "demo:shapes", "prompt:a star", "--source", "demo_shapes",
              "-s", "per_cell=1", "-s", "forms=photo", "-p", "steps=4", "--out", tmp_path / "contrib")
    assert out.exit_code == 0, out.output
    assert '"layer": "layer4.0"' in out.output and "units:" in out.output
    rows = [line for line in out.output.splitlines() if line.startswith("  unit=layer4.0:")]
    assert len(rows) == 10 and all("contribution=" in row for row in rows)
    values = [float(row.rsplit("contribution=", 1)[1]) for row in rows]
    assert values == sorted(values, reverse=True)


def test_help_and_plugins_import_no_torch():
    """Start-up cost lives in imports: listing commands and plugins must not pay for torch (seconds)."""
    import os
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from mmneurons.cli import main\n"
        "for args in (['--help'], ['plugins'], ['demo', '--help'], ['probe', '--help']):\n"
        "    out = CliRunner().invoke(main, args)\n"
        "    assert out.exit_code == 0, (args, out.output)\n"
        "    assert 'demo' in out.output or args != ['--help'], out.output\n"
        "print(sorted(m for m in ('torch', 'captum', 'lucent', 'open_clip', 'streamlit', 'matplotlib') "
        "if m in sys.modules))\n")
    env = {**os.environ, "MMNEURONS_LOAD_ENTRYPOINTS": "0"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def _tree(folder):
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else b"") for p in folder.rglob("*"))


def test_out_never_replaces_what_mmneurons_did_not_write(run, tmp_path, tiny_checkpoint):
    photos = write_random_images(tmp_path / "photos", 3)
    (photos / "notes.txt").write_text("mine")
    before = _tree(photos)
    model = f"openclip:{tiny_checkpoint}"
    scan = ["activations", model, "--layer", "layer3", "--images", photos, "--top-k", "2"]
    out = run(*scan, "--out", photos)  # the data loss: --out naming the images folder itself
    assert out.exit_code == 1 and "holds no result of mmneurons: nothing was written" in out.output
    assert "Traceback" not in out.output and _tree(photos) == before
    a_file = tmp_path / "report.txt"
    a_file.write_text("keep me")
    out = run(*scan, "--out", a_file)
    assert out.exit_code == 1 and "is not a folder: nothing was written" in out.output
    out = run(*scan, "--out", a_file / "sub")
    assert out.exit_code == 1 and f"{a_file} is a file" in out.output
    assert a_file.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["photos", "report.txt"]
    # an earlier result of the same kind is replaced (the documented default); one of another kind is not
    assert run(*scan, "--out", tmp_path / "res").exit_code == 0
    assert run(*scan, "--top-k", "1", "--out", tmp_path / "res").exit_code == 0
    assert TopKActivations.load(tmp_path / "res").k == 1
    out = run("probe", "neuron_search", "demo:shapes", "a star", "--out", tmp_path / "res")
    assert out.exit_code == 1 and "is a saved topk_activations result" in out.output
    assert TopKActivations.load(tmp_path / "res").k == 1


def test_replacing_a_result_leaves_a_users_hidden_folder_alone(tmp_path):
    from mmneurons.results import ProbeResult, load_result

    mine = tmp_path / ".out.old"  # the name the old code set a replaced result aside under, then removed
    mine.mkdir()
    (mine / "precious.txt").write_text("x")
    ProbeResult(probe="a").save(tmp_path / "out")
    ProbeResult(probe="b").save(tmp_path / "out")
    assert load_result(tmp_path / "out").probe == "b" and (mine / "precious.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.old", "out"]


def test_demo_samples_each_writes_every_image_and_never_replaces_another_file(run, tmp_path):
    out = run("demo", "samples", "--out", tmp_path / "s.png", "--each", tmp_path / "each")
    assert out.exit_code == 0, out.output
    names = sorted(p.name for p in (tmp_path / "each").iterdir())
    assert len(names) == 48 and "photo-star.png" in names and "attack-moon.png" in names
    assert run("demo", "samples", "--out", tmp_path / "s.png", "--each", tmp_path / "each").exit_code == 0  # again
    (tmp_path / "each" / "photo-star.png").write_bytes(b"my own picture")
    out = run("demo", "samples", "--out", tmp_path / "s.png", "--each", tmp_path / "each")
    assert out.exit_code == 1 and "photo-star.png exists and is not this command's image" in out.output
    assert (tmp_path / "each" / "photo-star.png").read_bytes() == b"my own picture"
