"""The ``demo`` model provider (``demo:shapes``, shipped with the package and verified by sha256),
the ``demo_shapes`` image source (the concept x form probe set) and ``mmneurons demo`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import torch

from mmneurons.hookspecs import hookimpl
from mmneurons.kinds import ImageSourceFactory, ModelProvider
from mmneurons.models import ClipModel, ModelLoadError
from mmneurons.params import Param

from .data import CONCEPTS, FORMS, ShapesSource, attack_specs, probe_specs
from .tokenizer import WordTokenizer

ASSETS = Path(__file__).parent / "assets"
PROBE_SEED = 7
CONTROL_SEEDS = 3


def sha256(path: Path) -> str:
    from .train import sha256 as _sha

    return _sha(path)


class DemoProvider(ModelProvider):
    name = "demo"
    description = "The embedded demo CLIP, trained on synthetic shapes as photos, drawings and words (offline)."

    def __init__(self, assets: Path = ASSETS) -> None:
        self.assets = Path(assets)

    def manifests(self) -> dict[str, dict]:
        out = {}
        for path in sorted(self.assets.glob("*manifest.json")):
            doc = json.loads(path.read_text())
            out[doc["name"]] = {**doc, "_dir": str(path.parent)}
        return out

    def list_models(self) -> list[str]:
        return [f"demo:{name}" for name in self.manifests()]

    def load(self, spec: str, device: Any) -> ClipModel:
        manifests = self.manifests()
        if spec not in manifests:
            known = ", ".join(f"demo:{n}" for n in manifests) or "none (the package's demo assets are missing)"
            raise ModelLoadError(f"unknown demo model 'demo:{spec}'; demo models: {known}")
        manifest = manifests[spec]
        weights = Path(manifest["_dir"]) / manifest["weights"]["file"]
        if not weights.is_file():
            raise ModelLoadError(f"demo:{spec}: weights file {weights} is missing; reinstall mmneurons "
                                 f"or retrain with `mmneurons demo train`")
        digest = sha256(weights)
        if digest != manifest["weights"]["sha256"]:
            raise ModelLoadError(
                f"demo:{spec}: weights file {weights} failed its checksum (sha256 {digest[:12]}..., the manifest "
                f"says {manifest['weights']['sha256'][:12]}...): it was changed or corrupted. Reinstall mmneurons "
                f"or retrain with `mmneurons demo train`")
        from mmneurons.plugins.openclip_models import build_model

        model = build_model(manifest["model_cfg"])
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        pre = manifest["preprocess"]
        from .captions import TEMPLATES

        meta = {k: v for k, v in manifest.items() if k != "_dir"}
        meta["templates"] = list(TEMPLATES)
        return ClipModel(model, WordTokenizer.from_dict(manifest["tokenizer"]), model_id=f"demo:{spec}",
                         image_size=pre["size"], mean=pre["mean"], std=pre["std"], device=device, meta=meta)


class DemoShapesSource(ImageSourceFactory):
    name = "demo_shapes"
    description = ("The concept x form probe set: 12 shapes as photo, drawing and text (category = concept, "
                   "meta['form'] = form), or typographic attack images.")
    params = (
        Param("per_cell", "int", 10, min=1, max=1000, help="images per (concept, form)"),
        Param("forms", "str", "all", choices=("all",) + FORMS + ("attack",),
              help="which forms (attack: photos with another concept's word written on them)"),
        Param("seed", "int", PROBE_SEED, min=0, help="random seed of the generator"),
        Param("size", "int", 64, min=16, max=512, help="image side in pixels"),
    )

    def create(self, per_cell: int = 10, forms: str = "all", seed: int = PROBE_SEED, size: int = 64) -> ShapesSource:
        if forms == "attack":
            specs = attack_specs(per_cell, seed)
        else:
            specs = probe_specs(per_cell, seed, FORMS if forms == "all" else (forms,))
        return ShapesSource(specs, size, name=f"demo shapes ({forms})")


# -- command line --------------------------------------------------------------------------------
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
@click.option("--evaluate/--no-evaluate", default=True, show_default=True, help="Evaluate and store it in the manifest.")
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
    from mmneurons.cli import tqdm_progress
    from mmneurons.plugins.openclip_models import build_model

    from .evaluate import evaluate

    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    model = DemoProvider(folder).load(manifest["name"], "cpu")
    controls = []
    for seed in range(seed_control, seed_control + CONTROL_SEEDS):
        torch.manual_seed(seed)
        controls.append(ClipModel(build_model(manifest["model_cfg"]), model.tokenizer, model_id=f"control:{seed}",
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
def samples_command(out, scale) -> None:
    """Write a grid of probe images: one row per form (and one of attack images), one column per concept."""
    from PIL import Image

    rows = [probe_specs(1, PROBE_SEED, (form,)) for form in FORMS] + [attack_specs(1, PROBE_SEED)]
    grid = Image.new("RGB", (len(CONCEPTS) * 66, len(rows) * 66), "white")
    for r, specs in enumerate(rows):
        source = ShapesSource(specs)
        for c in range(len(specs)):
            grid.paste(source.load(c), (c * 66 + 1, r * 66 + 1))
    grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST).save(out)
    click.echo(f"wrote {out}")


@hookimpl
def mmneurons_model_providers():
    return [DemoProvider()]


@hookimpl
def mmneurons_image_sources():
    return [DemoShapesSource()]


@hookimpl
def mmneurons_commands():
    return [demo_cli]
