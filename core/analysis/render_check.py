"""A sanity check per feature visualization: does the render reach its unit the way real images do?

Geirhos et al. ("Don't trust your eyes: on the (un)reliability of feature visualizations", ICML
2024) built networks whose renders show anything while their behaviour on natural images stays the
same, and found that real renders travel a path through the network unlike that of the natural
images that drive the unit. So we compare paths: at each layer before the unit, the render's
channel vector (the spatial mean) against the mean of the unit's top dataset examples, both taken
relative to the mean of reference images from the same data set. A layer's score is the share of
reference images the render beats on that cosine similarity; the path score is the mean over the
layers. 1 means the render looks to the network at every earlier stage more like what the unit
responds to than any reference image does; below :data:`WARN_BELOW` it looks less like it than a
typical image, and the render carries a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:
    from PIL import Image

    from mmneurons.images import ImageSource
    from mmneurons.kinds import Progress
    from mmneurons.models import ClipModel

__all__ = ["PATH_HELP", "WARN_BELOW", "PathBaseline", "PathScore", "check_against_source", "path_layers",
           "path_scores", "path_vectors", "reference_pixels", "source_pixels"]

#: a path score under this (the median reference image) gets a warning
WARN_BELOW = 0.5
#: what the score means, for the pages that show it
PATH_HELP = ("the share of reference images that the render beats at looking, to the layers before the unit, "
             "like the unit's top examples (1: all of them; under 0.5 it gets a warning)")


@dataclass
class PathScore:
    """One render's path score (mean over ``per_layer``), per layer, and its warning (or "")."""

    score: float
    per_layer: dict[str, float] = field(default_factory=dict)
    warning: str = ""


def path_layers(model: "ClipModel", layer: str, n: int = 4) -> list[str]:
    """Up to ``n`` blocks of the visual tower before ``layer``, the stem included (evenly spaced, the
    last always kept): where a render's path is compared. An SAE's layer counts as the layer it reads."""
    base = layer.removesuffix(".sae")
    listed = model.block_layers()
    blocks = [name for name in listed if not any(other.startswith(name + ".") for other in listed)]  # no stages
    if base not in blocks:
        raise ValueError(f"layer {layer!r} is not one of the model's blocks ({', '.join(blocks)}): "
                         f"no path to compare")
    before = blocks[:blocks.index(base)]
    if len(before) <= n:
        return before
    step = len(before) / n
    return [before[len(before) - 1 - int(i * step)] for i in reversed(range(n))]


def path_vectors(model: "ClipModel", pixels: torch.Tensor, layers: Sequence[str],
                 batch_size: int = 64) -> dict[str, torch.Tensor]:
    """``{layer: [B, C]}``: each image's spatially averaged channels at ``layers`` (float32)."""
    from mmneurons.activations import capture_layers
    from mmneurons.capture import reduce_spatial

    out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    with torch.inference_mode(), model.lock:
        for start in range(0, len(pixels), batch_size):
            acts = capture_layers(model, pixels[start:start + batch_size].float(), list(layers))
            for name in layers:
                out[name].append(reduce_spatial(acts[name].float(), "mean").cpu())
    return {name: torch.cat(parts) for name, parts in out.items()}


class PathBaseline:
    """Reference images' path vectors at ``layers``: computed once per data set, shared by units."""

    def __init__(self, model: "ClipModel", reference: torch.Tensor, layers: Sequence[str]) -> None:
        if len(reference) < 2:
            raise ValueError("a path check needs at least 2 reference images")
        self.layers = list(layers)
        self.vectors = path_vectors(model, reference, self.layers)
        self.mean = {name: v.mean(dim=0) for name, v in self.vectors.items()}

    def scores(self, model: "ClipModel", renders: torch.Tensor, top: torch.Tensor) -> list[PathScore]:
        """Each render's :class:`PathScore` against the mean path of ``top`` (the unit's top
        dataset examples, pixels ``[k, 3, S, S]``)."""
        if len(top) == 0:
            raise ValueError("a path check needs the unit's top dataset examples")
        mine, theirs = path_vectors(model, renders, self.layers), path_vectors(model, top, self.layers)
        per_layer = []
        for name in self.layers:
            center = self.mean[name]
            goal = (theirs[name].mean(dim=0) - center)[None]
            reference = torch.nn.functional.cosine_similarity(self.vectors[name] - center, goal, dim=1)
            render = torch.nn.functional.cosine_similarity(mine[name] - center, goal, dim=1)
            per_layer.append([(reference < s).float().mean().item() for s in render.tolist()])
        results = []
        for i in range(len(renders)):
            layers = {name: per_layer[j][i] for j, name in enumerate(self.layers)}
            score = sum(layers.values()) / max(1, len(layers))
            results.append(PathScore(score, layers, _warning(score, layers)))
        return results


def source_pixels(model: "ClipModel", source: "ImageSource", indices: Sequence[int]) -> torch.Tensor:
    """``[n, 3, S, S]`` pixels of the readable images among ``indices`` (unreadable ones are left out)."""
    from mmneurons.errors import ImageLoadError

    loaded = []
    for i in indices:
        try:
            loaded.append(model.pixels(source.load(int(i))))
        except ImageLoadError:
            continue
    size = model.image_size
    return torch.stack(loaded) if loaded else torch.empty(0, 3, size, size)


def reference_pixels(model: "ClipModel", source: "ImageSource", n: int, seed: int = 0) -> torch.Tensor:
    """The readable images of a seeded sample of ``n`` of the source: the path check's reference."""
    import numpy as np

    sample = np.random.default_rng(seed).choice(len(source), min(n, len(source)), replace=False)
    return source_pixels(model, source, sorted(int(i) for i in sample))


def _warning(score: float, layers: dict[str, float]) -> str:
    if score >= WARN_BELOW:
        return ""
    worst = min(layers, key=layers.get)
    return (f"path score {score:.2f}: before the unit this render looks to the network less like the unit's "
            f"top images than a typical image does (least at {worst}: {layers[worst]:.2f}); it may show "
            f"something the unit does not respond to in real images")


def path_scores(model: "ClipModel", layer: str, renders: torch.Tensor, top: torch.Tensor,
                reference: torch.Tensor, n_layers: int = 4) -> list[PathScore]:
    """One call for one unit: renders, its top examples and reference images, all pixels in [0, 1]."""
    return PathBaseline(model, reference, path_layers(model, layer, n_layers)).scores(model, renders, top)


def check_against_source(model: "ClipModel", unit: str, renders: "Sequence[Image.Image]", source: "ImageSource",
                         *, k: int = 9, reference: int = 64, seed: int = 0,
                         progress: "Progress | None" = None) -> list[PathScore]:
    """The path check of renders of ``unit`` against an image source: its top ``k`` images there (one
    scan) and a seeded sample of ``reference`` of them."""
    from mmneurons.activations import scan_top_k
    from mmneurons.kinds import no_progress
    from mmneurons.units import Unit

    target = Unit.parse(unit).validate(model)
    layers = path_layers(model, target.layer)
    if not layers:
        raise ValueError(f"{unit}: no layer before {target.layer} to compare a path at")
    scan = scan_top_k(model, source, target.layer, k, progress=progress or no_progress)
    renders_px = torch.stack([model.pixels(image.convert("RGB")) for image in renders])
    return PathBaseline(model, reference_pixels(model, source, reference, seed), layers).scores(
        model, renders_px, source_pixels(model, source, scan.top_indices[target.channel].tolist()))
