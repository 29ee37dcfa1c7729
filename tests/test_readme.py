"""Every README command runs: each fenced ``bash`` line that starts with ``uv run mmneurons`` and each
``python`` block, in README order, in one scratch folder (so a command may use what an earlier one
wrote), on the embedded model with small settings. A README that drifts from the code fails here."""

from __future__ import annotations

import json
import os
import re
import shlex
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from mmneurons.cli import main

from .helpers import write_random_images

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

#: parameter values shrunk so the whole README runs in a minute or two (-p / -s NAME=VALUE, or --name VALUE)
SMALL = {"steps": "8", "n_words": "300", "per_cell": "2"}
#: options appended to commands whose full run takes minutes (click keeps the last value given, and
#: a later -p NAME=VALUE overrides an earlier one)
APPEND = {("demo", "train"): ["--steps", "2", "--images", "256", "--batch-size", "16", "--no-evaluate"],
          ("demo", "evaluate"): ["--per-cell", "2"],
          ("visualize",): ["--steps", "8"],
          ("probe", "rendered_words"): ["-p", "n_words=300"],
          ("probe", "association_audit"): ["-p", "words=50", "-s", "per_cell=4"],
          ("sae", "train"): ["--epochs", "1", "--eval-source-param", "per_cell=2"],
          ("atlas", "build"): ["-s", "per_cell=1", "--steps", "2", "-p", "rendered_words.n_words=300", "-p",
                               "neuron_label.n_words=300", "--vis-batch", "256"]}
#: what an offline machine answers to a pretrained tag: the one-line error the README promises
OFFLINE = "not in the local cache"


def readme_commands() -> list[list[str]]:
    """The ``uv run mmneurons`` lines of the README's bash blocks (continuations joined, comments
    dropped), as argument lists without ``uv run mmneurons``."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("uv run mmneurons"):
                commands.append(shlex.split(line, comments=True)[3:])
    return commands


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def small(args: list[str]) -> list[str]:
    out = list(args)
    given = set()
    for i, arg in enumerate(out[:-1]):
        if arg in ("-p", "-s", "--param", "--source-param"):
            name, _, value = out[i + 1].partition("=")
            out[i + 1] = f"{name}={SMALL.get(name, value)}"
            given.add(name)
        elif arg.startswith("--") and arg[2:].replace("-", "_") in SMALL:
            out[i + 1] = SMALL[arg[2:].replace("-", "_")]
            given.add(arg[2:].replace("-", "_"))
    extra = next((extra for prefix, extra in APPEND.items() if tuple(out[:len(prefix)]) == prefix), [])
    if out[0] == "visualize" and "steps" in given:
        extra = []  # shrunk already; appending it again would give it twice
    return out + extra


def test_the_readme_has_the_commands_this_test_runs():
    names = {" ".join(args[:2]) if args[0] in ("demo", "probe") else args[0] for args in readme_commands()}
    assert {"plugins", "models", "layers", "activations", "visualize", "attribute", "demo samples", "demo train",
            "demo evaluate", "probe neuron_search", "probe unit_contributions", "probe neuron_label"} <= names
    assert len(python_blocks()) >= 3


@pytest.mark.slow
def test_every_readme_command_and_python_block_runs(registry, tmp_path, monkeypatch, ray_session):
    monkeypatch.chdir(tmp_path)
    write_random_images(tmp_path / "photos", 4, (80, 96))  # "your images": the README's examples read them
    served = []  # `mmneurons app` becomes the Streamlit server: its command line and settings are kept instead
    monkeypatch.setattr(os, "execve", lambda path, cmd, env: served.append(env))
    runner = CliRunner()
    for args in readme_commands():
        out = runner.invoke(main, small(args), catch_exceptions=False)
        if any("@openai" in a for a in args):  # pretrained weights: no download here, a one-line error
            assert out.exit_code == 1 and OFFLINE in out.output and "Traceback" not in out.output, (args, out.output)
        else:
            assert out.exit_code == 0, (args, out.output)
    # the README's --engine ray command joined the session's local Ray (it would start one)
    assert (tmp_path / "samples" / "photo-star.png").is_file() and (tmp_path / "runs" / "ig").is_dir()
    assert (tmp_path / "runs" / "demo-ray" / "result.json").is_file()
    assert (tmp_path / "demo-site" / "index.html").is_file()
    assert served and served[-1]["MMNEURONS_ATLAS"] == str(tmp_path / "demo-atlas")
    for block in python_blocks():
        namespace = types.ModuleType("readme_block").__dict__
        exec(compile(block, "README.md", "exec"), namespace)


def test_the_readme_typographic_attack_numbers_are_what_its_command_gives(registry, tmp_path, monkeypatch):
    sentence = (r'writing "moon" on photos of the other shapes makes (\d+)% of them "moon" '
                r'\((\d+(?:\.\d+)?)% of the pixels changed')
    [claim] = re.findall(sentence.replace(" ", r"\s+"), README)
    [args] = [a for a in readme_commands() if a[:2] == ["probe", "typographic_attack"]]
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(main, args, catch_exceptions=False)  # exactly as written, no shrinking
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output[:out.output.index("\n}") + 2])
    assert round(100 * summary["success_rate"]) == int(claim[0]), (summary, claim)
    assert round(100 * summary["pixels_changed"], 1 if "." in claim[1] else 0) == float(claim[1]), (summary, claim)
