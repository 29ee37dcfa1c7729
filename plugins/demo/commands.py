"""``mmneurons demo``: train, evaluate and look at the embedded demo model.

Only click at import: the work (torch, the renderer, the model) is imported inside each command, so
``mmneurons --help`` lists these commands without loading torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from . import ASSETS, PROBE_SEED

#: random-init models evaluated beside the trained one (the null for multimodal units)
CONTROL_SEEDS = 3


@click.group("demo")
def demo_cli() -> None:
    """Train, evaluate and look at the embedded demo model."""


@demo_cli.command("train")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder for shapes.pt and manifest.json (plugins/demo/assets replaces the shipped model).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", type=click.IntRange(1), default=1800, show_default=True)
@click.option("--images", type=click.IntRange(256), default=48_000, show_default=True)
@click.option("--batch-size", type=click.IntRange(2), default=128, show_default=True)
@click.option("--work", type=click.Path(), default=None, help="Cache for rendered images and resumable state.")
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="Evaluate and store it in the manifest.")
def train_command(out, seed, steps, images, batch_size, work, evaluate) -> None:
    """Train the demo CLIP reproducibly (about 10 minutes on 2 CPU cores); resumes if interrupted."""
    from mmneurons.cli import tqdm_progress

    from .train import TrainConfig, train

    cfg = TrainConfig(seed=seed, steps=steps, images=images, batch_size=batch_size)
    with tqdm_progress("training") as progress:
        manifest = train(cfg, Path(out), progress=progress, log=click.echo, work=Path(work) if work else None)
    click.echo(f"wrote {manifest}")
    if evaluate:
        _evaluate_into(Path(out), per_cell=40, seed_control=seed, write=True)


def _evaluate_into(folder: Path, per_cell: int, seed_control: int, write: bool) -> dict:
    import torch

    from mmneurons.cli import tqdm_progress
    from mmneurons.models import ClipModel
    from mmneurons.models import build_clip

    from .evaluate import evaluate
    from .plugin import DemoProvider

    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    model = DemoProvider(folder).load(manifest["name"], "cpu")
    controls = []
    for seed in range(seed_control, seed_control + CONTROL_SEEDS):
        torch.manual_seed(seed)
        controls.append(ClipModel(build_clip(manifest["model_cfg"]), model.tokenizer, model_id=f"control:{seed}",
                                  image_size=model.image_size, mean=model.mean, std=model.std))
    with tqdm_progress("evaluating") as progress:
        metrics = evaluate(model, per_cell=per_cell, attack_per_concept=per_cell, controls=controls,
                           progress=progress)
    if write:
        manifest["evaluation"] = metrics
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        tmp.replace(path)
    click.echo(json.dumps({k: metrics[k] for k in ("zero_shot", "typographic_attack")}, indent=1))
    mm = metrics["multimodal"]
    control = metrics["random_init_control"]
    click.echo(f"multimodal units: {mm['count']} of {mm['channels']} (null mean {mm['null_mean']:.1f}, "
               f"max {mm['null_max']}; random-init controls {control['counts']}, mostly "
               f"{max(control['by_concept_total'], key=control['by_concept_total'].get, default='-')})")
    return metrics


@demo_cli.command("evaluate")
@click.option("--folder", type=click.Path(exists=True, file_okay=False), default=str(ASSETS), show_default=True,
              help="Folder with shapes.pt and manifest.json (default: the shipped model).")
@click.option("--per-cell", type=click.IntRange(2), default=40, show_default=True)
@click.option("--write", is_flag=True, help="Store the evaluation in the folder's manifest.json.")
def evaluate_command(folder, per_cell, write) -> None:
    """Evaluate a trained demo model (zero-shot accuracy, multimodal units, typographic attack)."""
    _evaluate_into(Path(folder), per_cell, seed_control=0, write=write)


@demo_cli.command("samples")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@click.option("--scale", type=click.IntRange(1, 8), default=2, show_default=True)
@click.option("--each", type=click.Path(file_okay=False), default=None,
              help="Also write every image to this folder as FORM-CONCEPT.png (photo-star.png, attack-moon.png).")
def samples_command(out, scale, each) -> None:
    """Write a grid of probe images: one row per form (and one of attack images), one column per concept."""
    import io

    from PIL import Image

    from .data import CONCEPTS, FORMS, ShapesSource, attack_specs, probe_specs

    rows = [probe_specs(1, PROBE_SEED, (form,)) for form in FORMS] + [attack_specs(1, PROBE_SEED)]
    grid = Image.new("RGB", (len(CONCEPTS) * 66, len(rows) * 66), "white")
    files: dict[Path, bytes] = {}
    for r, specs in enumerate(rows):
        source = ShapesSource(specs)
        for c in range(len(specs)):
            image = source.load(c)
            grid.paste(image, (c * 66 + 1, r * 66 + 1))
            if each:
                record, png = source.record(c), io.BytesIO()
                image.save(png, format="PNG")
                files[Path(each) / f"{record.meta['form']}-{record.category}.png"] = png.getvalue()
    # a file of the same name that this command did not write (other bytes) is never replaced
    foreign = [path for path, data in files.items() if path.exists() and path.read_bytes() != data]
    if foreign:
        raise click.ClickException(f"{foreign[0]} exists and is not this command's image; nothing was written "
                                   f"(choose another --each folder)")
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST).save(out)
    click.echo(f"wrote {out}" + (f" and {len(files)} images to {each}/" if each else ""))
