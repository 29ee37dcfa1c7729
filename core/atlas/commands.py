"""``mmneurons atlas build | info | export | upgrade | gc``."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

from ..cli_support import (device_option, image_source, load_model_option, make_scan_options, model_argument,
                           parse_pairs, scan_options, tqdm_progress, user_errors)

RESUME = "the atlas keeps everything finished so far: run the same command again to resume"


@click.group()
def atlas() -> None:
    """Build, inspect and share atlases: every unit of whole layers, computed once."""


def stage_pairs(pairs: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``("neuron_label.n_words=5000",)`` -> ``{"neuron_label": {"n_words": "5000"}}``."""
    out: dict[str, dict[str, str]] = {}
    for name, value in parse_pairs(pairs).items():
        stage, dot, param = name.partition(".")
        if not dot or not param:
            raise click.BadParameter(f"{name!r}: write STAGE.NAME=VALUE, e.g. neuron_label.n_words=5000",
                                     param_hint="-p/--param")
        out.setdefault(stage, {})[param] = value
    return out


@atlas.command()
@model_argument
@click.option("--layer", "layers", multiple=True, required=True, help="Layer to build (repeat for several).")
@click.option("--atlas", "path", type=click.Path(file_okay=False), required=True,
              help="Atlas folder (created if missing; a build into an existing atlas continues it).")
@click.option("--images", type=click.Path(), default=None, help="Folder of images for the dataset examples.")
@click.option("--source", "source_name", default=None, help="A registered image source, e.g. demo_shapes.")
@click.option("-s", "--source-param", "source_pairs", multiple=True, help="Image source parameter NAME=VALUE.")
@click.option("--with", "with_", multiple=True,
              help="Build only these stages (repeat; default: all but the costly ones, such as ablation).")
@click.option("--without", multiple=True, help="Leave out this stage (repeat).")
@click.option("--k", type=click.IntRange(1), default=8, show_default=True, help="Top and bottom images per unit.")
@click.option("--steps", type=click.IntRange(1), default=256, show_default=True, help="Visualization steps.")
@click.option("--visualizer", default="channel", show_default=True, help="Visualizer plugin for the vis stage.")
@click.option("--vis-batch", type=click.IntRange(1), default=32, show_default=True, help="Units optimized together.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True, help="Images per forward pass.")
@click.option("--workers", type=click.IntRange(0), default=None, help="Image loader processes (default: auto).")
@click.option("-p", "--param", "pairs", multiple=True,
              help="Stage parameter STAGE.NAME=VALUE, e.g. -p vis.lr=0.05 -p neuron_label.n_words=5000.")
@click.option("--wait", is_flag=True, help="If another build is writing the atlas, wait for it, then continue it.")
@scan_options
@device_option
def build(model, layers, path, images, source_name, source_pairs, with_, without, k, steps, visualizer, vis_batch,
          batch_size, workers, pairs, wait, precision, engine, ray_address, ray_actors, device) -> None:
    """Build (or continue) the atlas of MODEL's LAYERs in the folder PATH."""
    from ..registry import get_registry
    from .build import BuildOptions, build_atlas

    if images is None and source_name is None:
        raise click.UsageError("give the images of the dataset examples: --images DIR or --source NAME "
                               "(e.g. --source demo_shapes)")
    per_stage = stage_pairs(pairs)
    with user_errors():
        registry = get_registry()
        source = image_source(registry, images, None, source_name, source_pairs)
        clip = load_model_option(model, device)
        options = BuildOptions(layers=list(layers), stages=list(with_) or None, without=list(without), k=k,
                               visualizer=visualizer, vis_params={"steps": steps, **per_stage.pop("vis", {})},
                               vis_batch=vis_batch, probe_params=per_stage, batch_size=batch_size,
                               num_workers=workers,
                               scan=make_scan_options(precision, engine, ray_address, ray_actors, batch_size, workers))
        started = time.time()
        try:
            report = build_atlas(clip, path, source, source.describe(), options, registry=registry,
                                 stage_progress=tqdm_progress, wait=wait)
        except (OSError, sqlite3.OperationalError) as exc:  # disk full, permissions: said in one line
            raise click.ClickException(f"{exc}; {RESUME}") from None
    for stage, what in report.items():
        click.echo(f"{stage}: " + ", ".join(f"{key} {value}" for key, value in what.items() if key != "skipped"))
        for layer, why in what.get("skipped", {}).items():
            click.echo(f"warning: {stage} skipped for {layer}: {why}", err=True)
    click.echo(f"-> {path} ({time.time() - started:.0f} s)")


def summary(path: str) -> dict[str, Any]:
    """What ``atlas info`` shows, as data."""
    from .read import Atlas

    with Atlas.open(path) as book:
        layers = []
        for layer in book.layers():
            counts = book.counts(layer.name)
            layers.append({"name": layer.name, "channels": layer.channels,
                           "stages": {name: {"state": info.state, "units": counts.get(name, 0),
                                             "params": info.params, "code_version": info.code_version,
                                             "finished": info.finished, "note": info.note}
                                      for name, info in layer.stages().items()}})
        builds = book.builds()
        unused = book.unreferenced_files()
        return {"atlas": str(book.folder), "identity": book.identity, "layers": layers,
                "unreferenced_files": {"count": len(unused), "bytes": sum(row[2] for row in unused)},
                "builds": [{"id": b.id, "state": b.state, "started": b.started, "finished": b.finished,
                            "error": b.error} for b in builds]}


@atlas.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(path: str, as_json: bool) -> None:
    """Summarize what the atlas at PATH holds."""
    with user_errors():
        data = summary(path)
    if as_json:
        click.echo(json.dumps(data, indent=1))
        return
    ident = data["identity"]
    click.echo(f"{data['atlas']}: {ident.get('model_id')} (weights {str(ident.get('weights'))[:12]}), "
               f"examples from {ident.get('source')}")
    for layer in data["layers"]:
        click.echo(f"  {layer['name']} ({layer['channels']} units)")
        for name, stage in layer["stages"].items():
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(stage["finished"])) if stage["finished"] else ""
            note = f"  ({stage['note']})" if stage["note"] else ""
            click.echo(f"    {name:<16} {stage['state']:<8} {stage['units']:>6}/{layer['channels']}  {when}{note}")
    unused = data["unreferenced_files"]
    if unused["count"]:
        click.echo(f"  {unused['count']} files no unit names ({unused['bytes'] / 1e6:.1f} MB): "
                   f"`mmneurons atlas gc {data['atlas']}` removes them")
    if data["builds"]:
        last = data["builds"][-1]
        click.echo(f"  {len(data['builds'])} build(s); the last: {last['state']}"
                   + (f" ({last['error']})" if last["error"] else ""))


@atlas.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--html", "html_dir", type=click.Path(file_okay=False), required=True,
              help="Folder for the static site (created; an existing one must be empty or an earlier export).")
def export(path: str, html_dir: str) -> None:
    """Write the atlas at PATH as a static site that opens from disk (index.html)."""
    from .export import export_html

    with user_errors():
        try:
            index = export_html(path, html_dir, progress_bar=tqdm_progress)
        except OSError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"-> {index}")


@contextmanager
def maintenance(path: str) -> Iterator[tuple[Path, int, sqlite3.Connection]]:
    """An existing atlas for ``upgrade`` and ``gc``: locked against builds, opened for writing (the
    schema brought up to date); with the schema version it had before."""
    from . import store
    from .build import build_lock

    folder = Path(path)
    if not (folder / store.DB_NAME).is_file():
        raise store.AtlasError(f"{folder} is not an atlas (no {store.DB_NAME})")
    with build_lock(folder):  # never while a build writes
        conn = store.connect(folder, write=False, check_version=False)
        before = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.close()
        conn = store.connect(folder, write=True)
        try:
            yield folder, before, conn
        finally:
            conn.close()


@atlas.command()
@click.argument("path", type=click.Path(file_okay=False))
def upgrade(path: str) -> None:
    """Bring the atlas at PATH to this version's schema (builds do this too)."""
    from .store import SCHEMA_VERSION

    with user_errors(), maintenance(path) as (folder, before, _):
        pass
    click.echo(f"{folder}: schema {before} -> {SCHEMA_VERSION}"
               if before != SCHEMA_VERSION else f"{folder}: schema {before}, up to date")


@atlas.command()
@click.argument("path", type=click.Path(file_okay=False))
def gc(path: str) -> None:
    """Delete the stored files no unit names any more (left by stages built again with other parameters)."""
    from .store import remove_unreferenced_files

    with user_errors(), maintenance(path) as (folder, _, conn):
        count, size = remove_unreferenced_files(folder, conn)
    click.echo(f"{folder}: removed {count} unreferenced files ({size / 1e6:.1f} MB)")
