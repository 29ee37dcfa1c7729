"""``mmneurons facet``: train a facet probe for faceted feature visualization (the ``faceted``
visualizer of :mod:`mmneurons.plugins.lucent_vis`), and show one.

Only click at import; torch and the model load inside the commands.
"""

from __future__ import annotations

import click


@click.group("facet")
def facet_cli() -> None:
    """Facets for faceted feature visualization (`mmneurons visualize --method faceted -p facet=FILE`)."""


@facet_cli.command("train")
@click.argument("model", required=False, default=None, metavar="[MODEL]")
@click.option("--facet", "facet_name", required=True,
              help="The facet: a category of the images (folder facet/ beside generic/) or a form (demo_shapes: "
                   "photo, drawing, text).")
@click.option("--generic", default="", help="What to contrast it with, comma-separated (default: every other image).")
@click.option("--layer", required=True, help="The lower layer the probe reads, e.g. layer3.0 (see `mmneurons layers`).")
@click.option("--images", type=click.Path(), default=None, help="Folder of images (subfolders: categories).")
@click.option("--source", "source_name", default=None, help="Any registered image source, e.g. demo_shapes.")
@click.option("-s", "--source-param", "source_pairs", multiple=True, help="Image source parameter NAME=VALUE.")
@click.option("--labels-from", type=click.Choice(["auto", "category", "form"]), default="auto", show_default=True,
              help="Read each image's label from its category or its form (auto: whichever has the facet).")
@click.option("--regularization", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="Inverse L2 strength of the logistic regression.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The facet file to write (JSON).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
def train_command(model, facet_name, generic, layer, images, source_name, source_pairs, labels_from, regularization,
                  out, device) -> None:
    """Train a facet probe on MODEL's LAYER: facet images against generic ones; writes a small JSON file."""
    from mmneurons.analysis.facets import train_facet
    from mmneurons.cli import image_source, load_model_option, tqdm_progress, user_errors
    from mmneurons.registry import get_registry

    with user_errors():
        source = image_source(get_registry(), images, None, source_name, source_pairs)
        if source is None:
            raise click.UsageError("give the images: --images DIR or --source NAME")
        clip = load_model_option(model, device)
        layer = clip.resolve_layer(layer)
        with tqdm_progress(f"facet {facet_name}") as progress:
            facet = train_facet(clip, source, facet_name, layer,
                                generic=[g.strip() for g in generic.split(",") if g.strip()],
                                labels_from=labels_from, regularization=regularization, progress=progress)
        path = facet.save(out)
    click.echo(f"facet '{facet.name}' on {facet.layer}: held-out accuracy {facet.accuracy:.3f} "
               f"({facet.facet_images} facet, {facet.generic_images} generic images) -> {path}")


@facet_cli.command("show")
@click.argument("path", type=click.Path())
def show_command(path) -> None:
    """Print what a facet file holds (without its weights)."""
    import json

    from mmneurons.analysis.facets import Facet
    from mmneurons.cli import user_errors

    with user_errors():
        data = Facet.load(path).to_dict()
    for key in ("coef", "mean", "scale"):
        data[key] = f"[{len(data[key])} values]"
    click.echo(json.dumps(data, indent=1))
