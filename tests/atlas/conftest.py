"""The reference atlas: the build of ``build_worker.py``, uninterrupted, made once per session."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from mmneurons.atlas import build_atlas
from mmneurons.registry import PluginRegistry

from .build_worker import options, source

WORKER = Path(__file__).with_name("build_worker.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def reference_atlas(tmp_path_factory, tiny_resnet) -> Path:
    folder = tmp_path_factory.mktemp("reference") / "atlas"
    images = source()
    build_atlas(tiny_resnet, folder, images, images.describe(), options(),
                registry=PluginRegistry(entry_points=False, env={}))
    return folder


def contents(folder: Path) -> dict:
    """What an atlas holds, for comparing two of them: each unit's values per stage, each stage's
    state, parameters and code version, and the stored files by hash."""
    conn = sqlite3.connect(f"file:{folder / 'atlas.sqlite'}?mode=ro", uri=True)
    try:
        values = {(layer, c, stage): json.loads(data) for layer, c, stage, data in
                  conn.execute("SELECT layer, channel, stage, data FROM unit_values")}
        stages = {(r[0], r[1]): r[2:] for r in
                  conn.execute("SELECT layer, stage, state, params, code_version FROM stages")}
        files = {r[0] for r in conn.execute("SELECT hash FROM files")}
        text = sorted(conn.execute("SELECT layer, channel, stage, text FROM unit_text"))
    finally:
        conn.close()
    return {"values": values, "stages": stages, "files": files, "text": text}


def assert_same_values(a, b, path: str = "", rel: float = 1e-5) -> None:
    """Equal, with floats equal to ``rel`` (strings, hashes and flags exactly)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), f"{path}: {a!r} != {b!r}"
        assert math.isclose(a, b, rel_tol=rel, abs_tol=1e-7), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_same_values(a[key], b[key], f"{path}.{key}", rel)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_values(x, y, f"{path}[{i}]", rel)
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def assert_same_atlas(got: Path, want: Path) -> None:
    a, b = contents(got), contents(want)
    assert a["stages"] == b["stages"]
    assert set(a["values"]) == set(b["values"])
    for key in b["values"]:
        assert_same_values(a["values"][key], b["values"][key], "/".join(map(str, key)))
    assert a["files"] == b["files"]          # PNGs and maps: the same bytes
    assert a["text"] == b["text"]
    for digest in a["files"]:
        assert list((got / "files" / digest[:2]).glob(f"{digest}*")), f"file {digest} is recorded but missing"


class Child:
    """One forked build: its pid and its progress log."""

    def __init__(self, server: "BuildServer", pid: int, log: Path) -> None:
        self.server, self.pid, self.log = server, pid, log
        self.exit_code: int | None = None

    def lines(self, timeout: float = 300) -> Iterator[str]:
        """The log's lines as the build writes them, until it ends."""
        deadline = time.monotonic() + timeout
        with open(self.log) as log:
            while time.monotonic() < deadline:
                line = log.readline()
                if line:
                    yield line
                    if line.startswith(("DONE", "ERROR")):
                        return
                elif self.server.exited(self.pid):
                    rest = log.read()
                    yield from rest.splitlines(keepends=True)
                    return
                else:
                    time.sleep(0.02)
        raise TimeoutError(f"the build {self.pid} ran over {timeout} s")

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.exit_code = self.server.wait(self.pid)

    def wait(self) -> int:
        self.exit_code = self.server.wait(self.pid)
        return self.exit_code


class BuildServer:
    """``build_worker.py --serve``: builds forked from a process that imported torch once."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.count, self.codes = tmp, 0, {}
        self.proc = subprocess.Popen([sys.executable, str(WORKER), "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert self.proc.stdout.readline().strip() == "READY"

    def start(self, folder: Path, slow: bool = False) -> Child:
        self.count += 1
        log = self.tmp / f"build-{self.count}.log"
        log.touch()
        self.proc.stdin.write(f"{folder} {log}{' --slow' if slow else ''}\n")
        self.proc.stdin.flush()
        words = self.proc.stdout.readline().split()
        assert words[0] == "PID", words
        return Child(self, int(words[1]), log)

    def exited(self, pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return pid in self.codes

    def wait(self, pid: int) -> int:
        while pid not in self.codes:
            words = self.proc.stdout.readline().split()
            assert words and words[0] == "EXIT", words
            self.codes[int(words[1])] = int(words[2])
        return self.codes[pid]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def build_server(tmp_path_factory) -> Iterator[BuildServer]:
    server = BuildServer(tmp_path_factory.mktemp("builds"))
    yield server
    server.close()
