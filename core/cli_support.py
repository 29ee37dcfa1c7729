"""What the commands of the core and of plugins share: one-line user errors, progress bars, model
loading, ``NAME=VALUE`` pairs and image sources from options. Nothing here imports torch."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import click

from .errors import (CheckpointError, EngineError, ImageLoadError, LayerError, ModelLoadError, OutputError,
                     UnitError)
from .kinds import Progress, plugin_params
from .params import ParamError
from .registry import PluginError, UnknownPluginError

# ValueError covers the rest of what users type wrong (an empty label list, a label not among the
# labels, an image of the wrong size); ours all say what is allowed.
USER_ERRORS = (ModelLoadError, LayerError, UnitError, ImageLoadError, CheckpointError, OutputError, ParamError,
               PluginError, FileNotFoundError, UnknownPluginError, ValueError, EngineError)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into a one-line ``Error: ...`` and exit status 1."""
    try:
        yield
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def tqdm_progress(desc: str) -> Iterator[Progress]:
    """A progress callback drawing a tqdm bar on stderr (rate and ETA count only this run's work:
    a resumed task's first report is its starting point)."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, file=sys.stderr, disable=None)
    started = [False]

    def update(done: int, total: int, message: str = "") -> None:
        if not started[0]:
            started[0] = True
            bar.initial = done
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


model_argument = click.argument("model", required=False, default=None, metavar="[MODEL]")
device_option = click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")


def load_model_option(model: str | None, device: str | None):
    from .models import default_model_id, load_model

    return load_model(model or default_model_id(), device=device)


def parse_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """``("steps=64", "baseline=gray")`` -> ``{"steps": "64", "baseline": "gray"}`` (validated later by Params)."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{pair!r}: write NAME=VALUE", param_hint="-p/--param")
        out[name.strip().replace("-", "_")] = value
    return out


def image_source(registry: Any, images: str | None, words: str | None, source_name: str | None,
                 source_pairs: Sequence[str] = ()) -> Any:
    """The image source that ``--images DIR``, ``--words FILE`` or ``--source NAME -s k=v`` names (at
    most one of them), or None."""
    from .images import FolderSource, WordSource

    if sum(x is not None for x in (images, words, source_name)) > 1:
        raise click.UsageError("give at most one of --images, --words or --source")
    if images:
        return FolderSource(images)
    if words:
        return WordSource.from_file(words)
    if source_name:
        factory = registry.get("mmneurons_image_sources", source_name)
        return factory.create(**plugin_params(factory, parse_pairs(source_pairs)))
    return None


def scan_options(command):
    """``--precision``, ``--engine``, ``--ray-address`` and ``--ray-actors``: how a scan runs."""
    options = [
        click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
                     show_default=True, help="What the scan computes in; auto follows the hardware (bf16 on GPUs "
                                             "and on CPUs with AMX or AVX-512-BF16 from 160 px, else fp32)."),
        click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Where batches run: this process, or Ray Data actors (pip install 'mmneurons[ray]')."),
        click.option("--ray-address", default=None,
                     help="Ray cluster to join (HOST:PORT or auto; default: RAY_ADDRESS, else a local Ray)."),
        click.option("--ray-actors", type=click.IntRange(1), default=None,
                     help="Model actors (default: one per GPU, else one per 4 CPUs)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_scan_options(precision: str, engine: str, ray_address: str | None, ray_actors: int | None,
                      batch_size: int, workers: int | None):
    from .scan import ScanOptions  # no Ray address given: ray.init reads RAY_ADDRESS, else starts a local Ray

    return ScanOptions(precision=precision, batch_size=batch_size, num_workers=workers, engine=engine,
                       ray_address=ray_address, ray_actors=ray_actors)
