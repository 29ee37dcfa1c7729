"""The lint step of the test command: ruff with the configuration in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_runs_the_configured_rules(tmp_path):
    """The check can fail: a file with an unused import and a blind except is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ntry:\n    pass\nexcept Exception:\n    pass\n")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                          str(ROOT / "pyproject.toml"), str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1 and "F401" in out.stdout and "BLE001" in out.stdout
