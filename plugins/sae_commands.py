"""``mmneurons sae``: train a sparse autoencoder on a layer's activations, show one, measure one
(:mod:`mmneurons.sae`, :mod:`mmneurons.analysis.sae`).

Only click at import; torch and the model load inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group("sae")
def sae_cli() -> None:
    """Sparse autoencoders (TopK) on a layer's activations: features beyond single neurons."""


def _source_options(command):
    options = (click.option("--images", type=click.Path(), default=None, help="Folder of images."),
               click.option("--source", "source_name", default=None, help="A registered image source (demo_shapes)."),
               click.option("-s", "--source-param", "source_pairs", multiple=True,
                            help="Image source parameter NAME=VALUE."),
               click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)"))
    for option in reversed(options):
        command = option(command)
    return command


def _quality_line(quality) -> str:
    line = (f"FVU {quality.fvu:.3f}, L0 {quality.l0:.1f}, dead features {quality.dead_fraction:.1%} "
            f"over {quality.positions} positions")
    if quality.accuracy:
        line += "; zero-shot model -> reconstructed: " + ", ".join(
            f"{group} {v['model']:.3f} -> {v['reconstructed']:.3f}" for group, v in quality.accuracy.items())
    return line


@sae_cli.command("train")
@click.argument("model", required=False, default=None, metavar="[MODEL]")
@click.option("--layer", required=True, help="The layer, e.g. layer4.0 (see `mmneurons layers`).")
@_source_options
@click.option("--features", type=click.IntRange(min=1), required=True, help="Number of features (dictionary size).")
@click.option("--k", type=click.IntRange(min=1), required=True, help="Active features per position (TopK).")
@click.option("--epochs", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Positions per optimizer step.")
@click.option("--image-batch", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images read per pass of the model (their positions are shuffled together).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=4e-4, show_default=True)
@click.option("--aux-k", type=click.IntRange(min=1), default=256, show_default=True,
              help="Dead features that reconstruct the residual in the auxiliary loss.")
@click.option("--dead-after", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Positions without firing after which a feature counts as dead.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="What the model's forward pass computes in, as a scan's (auto follows the hardware); the SAE "
                   "itself trains in float32.")
@click.option("--eval-source-param", "eval_pairs", multiple=True,
              help="Measure the result on the same source with these parameters (e.g. seed=20211130), NAME=VALUE.")
@click.option("--labels", default="", help="Zero-shot classes for the quality check (default: the eval images' "
                                           "categories).")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The SAE file to write (.safetensors).")
@click.option("--work", type=click.Path(file_okay=False), default=None,
              help="Folder of the resumable checkpoint (default: beside --out).")
def train_command(model, layer, images, source_name, source_pairs, device, features, k, epochs, batch_size,
                  image_batch, lr, aux_k, dead_after, seed, precision, eval_pairs, labels, out, work) -> None:
    """Train a TopK SAE on MODEL's LAYER over the images; an interrupted run resumes where it stopped."""
    from mmneurons.analysis.sae import SAETraining, sae_quality, train_sae
    from mmneurons.cli import image_source, load_model_option, tqdm_progress, user_errors
    from mmneurons.registry import get_registry
    from mmneurons.sae import SAE, SAEError

    with user_errors():
        registry = get_registry()
        source = image_source(registry, images, None, source_name, source_pairs)
        if source is None:
            raise click.UsageError("give the images: --images DIR or --source NAME")
        out_path = Path(out)
        if out_path.exists():
            SAE.load(out_path)  # refuses a file that is not an SAE before hours of training
        clip = load_model_option(model, device)
        layer = clip.resolve_layer(layer)
        cfg = SAETraining(features=features, k=k, epochs=epochs, image_batch=image_batch, batch_size=batch_size,
                          lr=lr, seed=seed, aux_k=aux_k, dead_after=dead_after, precision=precision)
        checkpoint = Path(work or out_path.parent) / f"{out_path.name}.partial.pt"
        pairs = " ".join(source_pairs)
        data = f"{source_name or images}{' ' + pairs if pairs else ''}: {source.describe()}"
        with tqdm_progress(f"SAE {layer}") as progress:
            sae = train_sae(clip, source, layer, cfg, checkpoint=checkpoint, data=data, progress=progress)
        if eval_pairs:
            if not source_name:
                raise SAEError("--eval-source-param needs --source")
            evaluation = image_source(registry, None, None, source_name, list(source_pairs) + list(eval_pairs))
            names = [x.strip() for x in labels.split(",") if x.strip()] or \
                sorted({evaluation.record(i).category for i in range(len(evaluation))} - {None})
            with tqdm_progress("SAE quality") as progress:
                quality = sae_quality(clip, sae, evaluation, labels=names or None, progress=progress)
            sae.info.quality = {"images": f"{source_name} with {' '.join(eval_pairs)} over the training's "
                                          f"parameters: {evaluation.describe()}", **quality.as_dict()}
        path = sae.save(out_path)
    click.echo(f"SAE of {layer}: {features} features, k={k}, {sae.info.training.get('steps')} steps, final loss "
               f"{sae.info.training.get('final_loss', float('nan')):.4f} -> {path}")
    if sae.info.quality:
        click.echo(_quality_line(quality))


@sae_cli.command("show")
@click.argument("path", type=click.Path())
def show_command(path) -> None:
    """Print what an SAE file holds (without its weights)."""
    import json

    from mmneurons.cli import user_errors
    from mmneurons.sae import SAE

    with user_errors():
        click.echo(json.dumps(SAE.load(path).describe(), indent=1))


@sae_cli.command("quality")
@click.argument("path", type=click.Path())
@click.argument("model", required=False, default=None, metavar="[MODEL]")
@_source_options
@click.option("--labels", default="", help="Zero-shot classes (default: the images' categories; none: no accuracy).")
def quality_command(path, model, images, source_name, source_pairs, device, labels) -> None:
    """Measure an SAE on images: FVU, L0, dead features, zero-shot accuracy with the layer replaced."""
    from mmneurons.analysis.sae import sae_quality
    from mmneurons.cli import image_source, load_model_option, tqdm_progress, user_errors
    from mmneurons.registry import get_registry
    from mmneurons.sae import SAE

    with user_errors():
        sae = SAE.load(path)
        source = image_source(get_registry(), images, None, source_name, source_pairs)
        if source is None:
            raise click.UsageError("give the images: --images DIR or --source NAME")
        clip = load_model_option(model or sae.info.model_id, device)
        names = [x.strip() for x in labels.split(",") if x.strip()] or \
            sorted({source.record(i).category for i in range(len(source))} - {None})
        with tqdm_progress("SAE quality") as progress:
            quality = sae_quality(clip, sae, source, labels=names or None, progress=progress)
    click.echo(_quality_line(quality))
