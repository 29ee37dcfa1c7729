"""``mmneurons atlas build | info | export``: a build from the command line, its summary, and a
build stopped by a full disk that resumes to the same atlas."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from mmneurons.atlas import Atlas
from mmneurons.cli import main

from .conftest import assert_same_atlas

ROOT = Path(__file__).resolve().parents[2]


def build_args(checkpoint: Path, folder: Path) -> list[str]:
    return ["atlas", "build", f"openclip:{checkpoint}", "--layer", "layer1.0", "--atlas", str(folder),
            "--source", "demo_shapes", "-s", "per_cell=2", "--with", "examples", "--with", "vis",
            "--with", "neuron_label", "-p", "neuron_label.n_words=300", "--steps", "3", "--k", "2",
            "--batch-size", "16", "--workers", "0"]


def test_build_then_info(tmp_path, tiny_checkpoint, registry):
    folder = tmp_path / "atlas"
    result = CliRunner().invoke(main, build_args(tiny_checkpoint, folder))
    assert result.exit_code == 0, result.output
    assert "vis: units 64" in result.output and "neuron_label: layers 1" in result.output
    info = CliRunner().invoke(main, ["atlas", "info", str(folder), "--json"])
    data = json.loads(info.output)
    assert data["identity"]["model_id"] == f"openclip:{tiny_checkpoint}"
    stages = data["layers"][0]["stages"]
    assert sorted(stages) == ["examples", "neuron_label", "vis"]
    assert {s["units"] for s in stages.values()} == {64} and stages["vis"]["params"]["steps"] == 3
    assert stages["neuron_label"]["params"]["n_words"] == 300
    text = CliRunner().invoke(main, ["atlas", "info", str(folder)]).output
    assert "layer1.0 (64 units)" in text and "vis" in text and "64/64" in text


def test_bad_stage_parameters_are_one_line_errors(tmp_path, tiny_checkpoint, registry):
    for extra, message in ((["-p", "n_words=3"], "STAGE.NAME=VALUE"),
                           (["-p", "vis.steps=0"], "steps"),
                           (["--without", "colour"], "unknown atlas stage"),
                           (["-p", "examples.k=3"], "the examples stage takes --k")):
        result = CliRunner().invoke(main, build_args(tiny_checkpoint, tmp_path / "a") + extra)
        assert result.exit_code != 0 and message in result.output, result.output
    result = CliRunner().invoke(main, ["atlas", "build", "--layer", "layer1.0", "--atlas", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--images DIR or --source NAME" in result.output


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (96 * 1024, 96 * 1024))


def test_a_full_disk_stops_the_build_in_one_line_and_it_resumes(tmp_path, tiny_checkpoint, registry):
    """A real write failure (a file-size limit: EFBIG, as a full disk gives ENOSPC) mid-build."""
    folder, reference = tmp_path / "atlas", tmp_path / "reference"
    proc = subprocess.run([sys.executable, "-m", "mmneurons.cli", *build_args(tiny_checkpoint, folder)],
                          cwd=ROOT, capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "run the same command again to resume" in error[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(error[0]) < 200 and ("disk I/O error" in error[0] or "File too large" in error[0])
    result = CliRunner().invoke(main, build_args(tiny_checkpoint, folder))
    assert result.exit_code == 0, result.output
    with Atlas.open(folder) as book:
        assert [b.state for b in book.builds()] in (["failed", "done"], ["killed", "done"])
        assert book.stages("layer1.0")["examples"].state == "done"
    assert CliRunner().invoke(main, build_args(tiny_checkpoint, reference)).exit_code == 0
    assert_same_atlas(folder, reference)


def test_a_stage_the_source_cannot_feed_is_skipped_with_its_reason(tmp_path, tiny_checkpoint, registry):
    from tests.helpers import write_random_images

    photos = write_random_images(tmp_path / "photos", 6)      # no concept x modality structure
    folder = tmp_path / "atlas"
    result = CliRunner().invoke(main, ["atlas", "build", f"openclip:{tiny_checkpoint}", "--layer", "layer1.0",
                                       "--atlas", str(folder), "--images", str(photos), "--with", "examples",
                                       "--with", "modality", "--k", "2", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "warning: modality skipped for layer1.0: modality probe: every image needs a concept" in result.output
    with Atlas.open(folder) as book:
        info = book.stages("layer1.0")["modality"]
        assert info.state == "skipped" and "concept" in info.note
        assert book.counts("layer1.0") == {"examples": 64}
