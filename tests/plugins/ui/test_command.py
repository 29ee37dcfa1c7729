"""`mmneurons app` starts Streamlit on the packaged router, stops with it, and limits what an
exposed server reads and loads."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from click.testing import CliRunner

from mmneurons.cli import main
from mmneurons.plugins.ui import APP_SCRIPT
from mmneurons.plugins.ui.command import app_command


def test_app_command_runs_streamlit_on_the_packaged_router(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", lambda path, cmd, env: calls.append((path, cmd, env)))
    result = CliRunner().invoke(main, ["app", "--model", "openclip:RN50x4@openai", "--port", "8600",
                                       "--headless", "--", "--server.runOnSave", "true"])
    assert result.exit_code == 0, result.output
    (path, cmd, env), = calls
    assert path == sys.executable == cmd[0]
    assert cmd[1:5] == ["-m", "streamlit", "run", str(APP_SCRIPT)] and APP_SCRIPT.is_file()
    assert cmd[cmd.index("--server.port") + 1] == "8600"
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == "20"
    assert cmd[-2:] == ["--server.runOnSave", "true"]
    assert env["MMNEURONS_DEFAULT_MODEL"] == "openclip:RN50x4@openai"
    assert env["MMNEURONS_MAX_UPLOAD_MB"] == "20"  # the upload widget checks the same limit
    assert app_command.name == "app"


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
            return response.read().strip() == b"ok"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_stopping_mmneurons_app_stops_the_server_it_started(stop):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MMNEURONS_LOAD_ENTRYPOINTS": "0", "MMNEURONS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mmneurons.cli", "app", "--headless", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not _serving(port):
            assert proc.poll() is None and time.monotonic() < deadline, "the app did not come up"
            time.sleep(0.5)
        proc.send_signal(stop)  # what a service manager (SIGTERM) or Ctrl+C (SIGINT) sends `mmneurons app`
        proc.wait(timeout=30)
        assert not _serving(port), "a server is still answering after `mmneurons app` was stopped"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serving_beyond_loopback_limits_files_and_models(monkeypatch, tmp_path):
    from mmneurons.access import DATA_ROOTS_ENV, MODELS_ENV

    calls = []
    monkeypatch.setattr(os, "execve", lambda path, cmd, env: calls.append(env))
    monkeypatch.delenv(DATA_ROOTS_ENV, raising=False)
    monkeypatch.delenv(MODELS_ENV, raising=False)
    runner = CliRunner()
    assert runner.invoke(main, ["app", "--headless"]).exit_code == 0  # loopback: as before
    assert DATA_ROOTS_ENV not in calls[-1] and MODELS_ENV not in calls[-1]
    out = runner.invoke(main, ["app", "--host", "0.0.0.0", "--headless"])
    assert out.exit_code == 0 and "no folder (give --data DIR)" in out.output
    assert calls[-1][DATA_ROOTS_ENV] == "" and calls[-1][MODELS_ENV] == "demo:shapes"
    out = runner.invoke(main, ["app", "--host", "0.0.0.0", "--data", str(tmp_path), "--model", "openclip:RN50@random",
                               "--allow-model", "openclip:RN101@random", "--headless"])
    assert out.exit_code == 0, out.output
    assert calls[-1][DATA_ROOTS_ENV] == str(tmp_path.resolve())
    assert calls[-1][MODELS_ENV] == "openclip:RN50@random,demo:shapes,openclip:RN101@random"
