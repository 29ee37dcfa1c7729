"""``mmneurons app``: serve the Streamlit app, with what visitors may read and load."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


@click.command("app")
@click.option("--model", default=None, help="Model shown first (default: the embedded demo:shapes).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on (loopback by default).")
@click.option("--port", type=int, default=8501, show_default=True)
@click.option("--max-upload-mb", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Largest image a user may upload.")
@click.option("--headless/--browser", default=False, help="Do not open a browser window.")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A folder visitors may read images and word lists from (repeatable). Served beyond "
                   "loopback (--host), the app reads files only under these folders: none without --data.")
@click.option("--allow-model", "allow_models", multiple=True,
              help="A model id visitors may load (repeatable). Served beyond loopback, only these, --model "
                   "and the embedded default are offered.")
@click.option("--run-limit", type=click.FloatRange(1), default=900, show_default=True,
              help="Seconds one run (a probe, a render) may take before the app stops it.")
@click.option("--atlas", "atlas", type=click.Path(file_okay=False), default=None,
              help="An atlas (mmneurons atlas build) the pages read instead of computing, for its model's layers "
                   "('none': compute everything, and build no atlas on first start).")
@click.argument("streamlit_args", nargs=-1, type=click.UNPROCESSED)
def app_command(model, host, port, max_upload_mb, headless, data, allow_models, run_limit, atlas,
                streamlit_args) -> None:
    """Start the Streamlit app: a Microscope for any CLIP, composed from the registered plugins.

    Extra arguments go to `streamlit run` (e.g. -- --server.runOnSave true).
    """
    from mmneurons.access import DATA_ROOTS_ENV, MODELS_ENV, is_loopback
    from mmneurons.models import DEFAULT_MODEL_ID

    from . import APP_SCRIPT

    env = dict(os.environ, MMNEURONS_MAX_UPLOAD_MB=str(max_upload_mb), MMNEURONS_APP_RUN_LIMIT_S=str(run_limit))
    if atlas == "none":
        env["MMNEURONS_ATLAS"] = "none"
    elif atlas:
        from mmneurons.atlas import Atlas, AtlasError

        try:
            with Atlas.open(atlas) as book:
                model = model or book.model_id  # the app opens on the atlas's model
        except AtlasError as exc:
            raise click.ClickException(str(exc)) from None
        env["MMNEURONS_ATLAS"] = str(Path(atlas).resolve())
    if model:
        env["MMNEURONS_DEFAULT_MODEL"] = model
    exposed = not is_loopback(host)
    if exposed or data:  # what a visitor may make the server read (mmneurons.access)
        env[DATA_ROOTS_ENV] = os.pathsep.join(str(Path(d).resolve()) for d in data)
    if exposed or allow_models:
        env[MODELS_ENV] = ",".join(dict.fromkeys([model or DEFAULT_MODEL_ID, DEFAULT_MODEL_ID, *allow_models]))
    if exposed:
        click.echo(f"serving on {host}, beyond this machine: visitors may read files under "
                   f"{', '.join(data) or 'no folder (give --data DIR)'} and load {env[MODELS_ENV]}", err=True)
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT), "--server.address", host,
           "--server.port", str(port), "--server.maxUploadSize", str(max_upload_mb),
           "--server.headless", "true" if headless else "false", "--browser.gatherUsageStats", "false",
           *streamlit_args]
    click.echo(f"mmneurons app on http://{host}:{port} (Ctrl+C stops it)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # this process becomes the server: a SIGTERM or Ctrl+C meant for `mmneurons app` reaches
    # Streamlit itself, and no orphaned child can be left serving
    os.execve(sys.executable, cmd, env)
