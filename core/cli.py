"""The ``mmneurons`` command line.

The parameters of the plugin a command runs become its options (:mod:`mmneurons.options`), so a
new plugin gets its CLI for free. Errors that users cause (unknown model, layer, unit, bad image
folder, bad parameter) are printed as one line, without a traceback.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click

from . import __version__
from .atlas.commands import atlas
from .cli_support import (USER_ERRORS, device_option, image_source, load_model_option,  # noqa: F401
                          make_scan_options, model_argument, parse_pairs, scan_options, tqdm_progress, user_errors)
from .kinds import HOOK_KINDS, plugin_params
from .options import PLUGIN_VALUES, PluginCommand, merge_values, pick_first_argument, pick_option
from .registry import get_registry

# Nothing above imports torch: `mmneurons --help` and `mmneurons plugins` start in a fraction of a
# second. Commands import the model code when they run. (USER_ERRORS, parse_pairs and tqdm_progress
# stay importable from here for plugins' commands.)


class PluginGroup(click.Group):
    """The top-level group: built-in commands plus those that plugins add (``mmneurons_commands``)."""

    def _plugin_commands(self) -> dict[str, click.Command]:
        return {c.name: c for c in get_registry().commands() if c.name not in self.commands}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugin_commands()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, name) or self._plugin_commands().get(name)


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mmneurons")
def main() -> None:
    """Find and explain multimodal neurons in CLIP models."""


main.add_command(atlas)


@main.command()
@click.option("--all", "show_all", is_flag=True, help="Also list the plugin objects each plugin provides.")
@click.option("--params", "params_of", is_flag=False, flag_value="", default=None, metavar="[NAME]",
              help="List the parameters of every plugin object (or of those called NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(show_all: bool, params_of: str | None, as_json: bool) -> None:
    """List installed plugins with version, hooks and load errors."""
    registry = get_registry()
    if params_of is not None:
        echo_params(registry, params_of, as_json)
        return
    provided: dict[str, list[dict]] = {}
    if show_all:
        for hook, kind in HOOK_KINDS.items():
            for obj in registry.collect(hook):
                provided.setdefault(getattr(obj, "provided_by", "?"), []).append(
                    {"kind": kind, "name": obj.name, "description": getattr(obj, "description", "")})
    rows = []
    for info in registry.plugins():
        row = asdict(info)
        if show_all:
            row["provides"] = provided.get(info.name, [])
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        origin = "built-in" if row["builtin"] else f"{row['distribution'] or '?'} {row['version'] or ''}".strip()
        click.echo(f"{row['name']} ({origin}): {', '.join(row['hooks']) or 'no hooks'}")
        for item in row.get("provides", []):
            click.echo(f"    {item['kind']} {item['name']}: {item['description']}")
        for err in row["errors"]:
            click.echo(f"    ERROR: {err}")


def echo_params(registry: Any, name: str, as_json: bool) -> None:
    """Every plugin object's parameters (name, type, default, bounds or choices, help)."""
    rows = []
    for hook, kind in HOOK_KINDS.items():
        if hook == "mmneurons_commands":
            continue
        for obj in registry.collect(hook):
            if name and obj.name != name:
                continue
            rows.append({"kind": kind, "name": obj.name, "plugin": getattr(obj, "provided_by", ""),
                         "params": [{"name": p.name, "type": p.type, "default": p.default, "min": p.min, "max": p.max,
                                     "choices": list(p.choices) if p.choices is not None else None,
                                     "optional": p.optional, "help": p.help} for p in getattr(obj, "params", ())]})
    if name and not rows:
        raise click.ClickException(f"no plugin object is called '{name}' (see `mmneurons plugins --all`)")
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    for row in rows:
        click.echo(f"{row['kind'].replace('_', ' ')} {row['name']} ({row['plugin'] or '?'}):"
                   + ("" if row["params"] else " no parameters"))
        for p in getattr(registry.get(_hook_of(row["kind"]), row["name"]), "params", ()):
            default = "required" if p.default is None and not p.optional else f"default {p.default!r}"
            click.echo(f"  --{p.name.replace('_', '-'):<22} {p.type:<5} {default}; {p.allowed()}"
                       + (f". {p.help}" if p.help else ""))


def _hook_of(kind: str) -> str:
    return next(hook for hook, k in HOOK_KINDS.items() if k == kind)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(as_json: bool) -> None:
    """List model ids the providers know (any open_clip architecture also loads with @random)."""
    from .models import default_model_id

    out = {}
    for provider in get_registry().model_providers():
        out[provider.name] = provider.list_models()
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"default: {default_model_id()}")
    for name, ids in out.items():
        click.echo(f"{name}:")
        for model_id in ids:
            click.echo(f"  {model_id}")


@main.command()
@model_argument
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def layers(model: str | None, device: str | None, as_json: bool) -> None:
    """List the hookable layers of MODEL's visual tower and their (C, H, W) shapes."""
    with user_errors():
        clip = load_model_option(model, device)
        rows = clip.layers()
    if as_json:
        click.echo(json.dumps([{"name": r.name, "shape": list(r.shape)} for r in rows], indent=2))
        return
    click.echo(f"{clip.model_id} ({clip.kind}, {clip.image_size}px)")
    for row in rows:
        click.echo(f"  {row.name:<28} {row.shape[0]:>6} x {row.shape[1]} x {row.shape[2]}")


@main.command()
@model_argument
@click.option("--layer", required=True, help="Layer to scan, e.g. layer4.5 (see `mmneurons layers`).")
@click.option("--images", "images", type=click.Path(), default=None, help="Folder of images.")
@click.option("--words", type=click.Path(), default=None, help="Text file of words to render as images.")
@click.option("--source", "source_name", default=None,
              help="A registered image source: webdataset, parquet, demo_shapes ... (see `mmneurons plugins`).")
@click.option("-s", "--source-param", "source_pairs", multiple=True,
              help="Image source parameter NAME=VALUE, e.g. -s path=shards/{00000..00009}.tar.")
@click.option("--top-k", "top_k", type=click.IntRange(1), default=16, show_default=True)
@click.option("--reduce", type=click.Choice(["mean", "max"]), default="mean", show_default=True,
              help="Spatial reduction of each channel's map.")
@click.option("--bottom", is_flag=True, help="Also keep the k least activating images.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--workers", type=click.IntRange(0), default=None, help="Image loader processes (default: auto).")
@click.option("--out", type=click.Path(), required=True, help="Folder to save the result in.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Checkpoint to OUT.partial.pt while scanning, and resume from it after an interruption.")
@scan_options
@device_option
def activations(model, layer, images, words, source_name, source_pairs, top_k, reduce, bottom, batch_size, workers,
                out, resume, precision, engine, ray_address, ray_actors, device) -> None:
    """Stream images through MODEL and keep the top-k images of every channel of LAYER."""
    from .activations import scan_top_k
    from .results import check_output

    if sum(x is not None for x in (images, words, source_name)) != 1:
        raise click.UsageError("give exactly one of --images DIR, --words FILE or --source NAME")
    with user_errors():
        check_output(out, "topk_activations")  # before the scan, not after it
        source = image_source(get_registry(), images, words, source_name, source_pairs)
        clip = load_model_option(model, device)
        clip.layer_info(layer)
        options = make_scan_options(precision, engine, ray_address, ray_actors, batch_size, workers)
        with tqdm_progress(f"{layer}") as progress:
            result = scan_top_k(clip, source, layer, top_k, reduce=reduce, bottom=bottom, options=options,
                                progress=progress, checkpoint=f"{out}.partial.pt" if resume else None)
        path = result.save(out)
    click.echo(f"scanned {result.n_images} images ({len(result.skipped)} skipped, {result.precision}) -> {path}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    for image_id, why in result.skipped[:10]:
        click.echo(f"skipped {image_id}: {why}", err=True)


@main.command(cls=PluginCommand, hook="mmneurons_visualizers", pick=pick_option("--method"), default="channel")
@click.argument("model")
@click.argument("targets", nargs=-1, required=True)
@click.option("--method", default="channel", show_default=True,
              help="Visualizer: channel, neuron, negative, diversity, text_direction (TARGETS are prompts) ...")
@click.option("-p", "--param", "pairs", multiple=True, help="Visualizer parameter NAME=VALUE, e.g. -p steps=512.")
@click.option("--out", type=click.Path(), required=True, help="Folder for one result folder per image.")
@device_option
def visualize(model, targets, method, pairs, out, device, **options) -> None:
    """Render feature visualizations of TARGETS (units like layer4.0:17, or prompts for text_direction)."""
    from pathlib import Path

    from .results import check_output

    with user_errors():
        check_output(Path(out) / "result")  # OUT holds one result folder per image: not a file
        visualizer = get_registry().get("mmneurons_visualizers", method)
        values = plugin_params(visualizer, merge_values(options[PLUGIN_VALUES], parse_pairs(pairs)))
        clip = load_model_option(model, device)
        with tqdm_progress(method) as progress:
            results = visualizer.visualize(clip, list(targets), values, progress)
        for i, result in enumerate(results):
            safe = "".join(c if c.isalnum() or c in "._-@" else "_" for c in result.target)
            path = result.save(Path(out) / f"{i:03d}-{safe}")
            click.echo(f"{result.target}: activation {result.activation:.4f} (gray {result.activation_gray:.4f}, "
                       f"noise {result.activation_noise:.4f}) -> {path}")
            for warning in result.warnings:
                click.echo(f"warning: {warning}", err=True)


@main.command(cls=PluginCommand, hook="mmneurons_probes", pick=pick_first_argument)
@click.argument("name")
@click.argument("model")
@click.argument("target")
@click.option("--images", type=click.Path(), default=None, help="Folder of images (subfolders: categories).")
@click.option("--words", type=click.Path(), default=None, help="Text file of words to render as images.")
@click.option("--source", "source_name", default=None, help="Any registered image source, e.g. demo_shapes.")
@click.option("-s", "--source-param", "source_pairs", multiple=True, help="Image source parameter NAME=VALUE.")
@click.option("-p", "--param", "pairs", multiple=True, help="Probe parameter NAME=VALUE, e.g. -p k=16.")
@click.option("--out", type=click.Path(), default=None,
              help="Folder to save the result in (without it the result is printed and nothing is saved).")
@device_option
def probe(name, model, target, images, words, source_name, source_pairs, pairs, out, device, **options) -> None:
    """Run probe NAME on MODEL for TARGET (a unit like layer4.0:17, a layer, or a prompt)."""
    from .results import check_output

    with user_errors():
        if out:
            check_output(out)  # before the run: the kind is checked again when the result is saved
        registry = get_registry()
        plugin = registry.get("mmneurons_probes", name)
        values = plugin_params(plugin, merge_values(options[PLUGIN_VALUES], parse_pairs(pairs)))
        source = image_source(registry, images, words, source_name, source_pairs)
        clip = load_model_option(model, device)
        with tqdm_progress(name) as progress:
            result = plugin.run(clip, target, source, values, progress)
        path = result.save(out) if out else None
    echo_result(result)
    if path is not None:
        click.echo(f"-> {path}")


def echo_result(result: Any, rows: int = 10) -> None:
    """Print a result's summary and the first ``rows`` rows of each of its tables (any result that
    has ``summary`` and ``tables``), then its warnings on stderr."""
    summary = getattr(result, "summary", None)
    if summary:
        click.echo(json.dumps(summary, indent=1, default=str))
    for table, items in (getattr(result, "tables", None) or {}).items():
        click.echo(f"{table}:")
        for row in items[:rows]:
            click.echo("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)


def _labels(text: str) -> list[str]:
    from pathlib import Path

    path = Path(text)
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else text.split(",")
    return [line.strip() for line in lines if line.strip()]


@main.command(cls=PluginCommand, hook="mmneurons_attributors", pick=pick_option("--method"), default="ig")
@click.argument("model")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--target", default=None, help="A unit (layer4.0:17, layer4.0:17@3,3) or 'prompt:TEXT'.")
@click.option("--label", default=None, help="Zero-shot class to explain (with --labels).")
@click.option("--labels", default=None, help="File with one label per line, or comma-separated labels.")
@click.option("--template", "templates", multiple=True, help="Prompt template with {} (repeatable).")
@click.option("--prompt", default=None, help="Free text prompt: explain the image-text similarity.")
@click.option("--method", default="ig", show_default=True, help="Attributor (see `mmneurons plugins --all`).")
@click.option("-p", "--param", "pairs", multiple=True, help="Method parameter NAME=VALUE, e.g. -p steps=64.")
@click.option("--out", type=click.Path(), required=True, help="Folder for one result folder per image.")
@device_option
def attribute(model, images, target, label, labels, templates, prompt, method, pairs, out, device, **options) -> None:
    """Attribute a unit, a zero-shot class or a prompt to the pixels of IMAGES."""
    from pathlib import Path

    from .captum import PromptTarget, ZeroShotTarget, parse_target
    from .results import check_output

    if sum(x is not None for x in (target, label, prompt)) != 1:
        raise click.UsageError("give exactly one of --target, --label (with --labels) or --prompt")
    with user_errors():
        check_output(Path(out) / "result")
        if label is not None:
            if not labels:
                raise click.UsageError("--label needs --labels (a file or comma-separated labels)")
            goal = ZeroShotTarget(label, tuple(_labels(labels)), tuple(templates) or None)
        elif prompt is not None:
            goal = PromptTarget(prompt)
        else:
            goal = parse_target(target)
        attributor = get_registry().get("mmneurons_attributors", method)
        values = plugin_params(attributor, merge_values(options[PLUGIN_VALUES], parse_pairs(pairs)))
        clip = load_model_option(model, device)
        with tqdm_progress(method) as progress:
            results = attributor.attribute(clip, list(images), goal, values, progress)
        for i, result in enumerate(results):
            path = result.save(Path(out) / f"{i:03d}-{Path(result.image_id).stem}")
            delta = (f", convergence delta {result.convergence_delta:.2e}"
                     if result.convergence_delta is not None else "")
            click.echo(f"{result.image_id}: {result.target} = {result.target_value:.4f}{delta} -> {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
