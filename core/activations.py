"""Activations over images: the capture primitives (:mod:`mmneurons.capture`, re-exported here)
and the scans built on them: a streaming top-k over an image source (:func:`scan_top_k`,
:func:`scan_layers_top_k`) and every image's spatial means (:func:`layer_means`). The scans run
through :mod:`mmneurons.scan` on the engine their options name, and resume from a checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from .capture import (capture_layers, channel_dim, edited_layer, layer_gradient, layer_hooks,  # noqa: F401
                      reduce_spatial, unit_activations)
from .errors import CheckpointError
from .kinds import Progress, no_progress
from .results import TopKActivations
from .scan import StreamingTopK  # noqa: F401 - its home before the scan module; still imported from here

if TYPE_CHECKING:  # pragma: no cover
    from .images import ImageSource
    from .models import ClipModel
    from .scan import ScanOptions, ScanPartial, ScanRequest


def _save_scan_state(path, identity: dict, partial: "ScanPartial") -> None:
    tmp = f"{path}.tmp"
    data = torch.frombuffer(bytearray(partial.to_bytes()), dtype=torch.uint8)
    torch.save({"identity": identity, "partial": data}, tmp)
    os.replace(tmp, path)


def _load_scan_state(path, identity: dict, request: "ScanRequest", channels: dict) -> "ScanPartial | None":
    """The saved partial of an interrupted scan of the same thing, else None (a stale file is ignored)."""
    from .scan import ScanPartial

    if path is None or not os.path.exists(path):
        return None
    try:  # tensors, numbers, strings and lists only: a pickle that would run code is refused, not run
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the file holds, it is not a checkpoint of ours
        raise CheckpointError(f"{path} is not a scan checkpoint that mmneurons can read safely "
                              f"({type(exc).__name__}); move it away, or scan with --no-resume") from None
    if not isinstance(state, dict) or not isinstance(state.get("partial"), torch.Tensor):
        raise CheckpointError(f"{path} is not a scan checkpoint of mmneurons; move it away, or scan with --no-resume")
    if state.get("identity") != identity:
        return None
    try:  # arrays and JSON only (np.load without pickles)
        return ScanPartial.from_bytes(state["partial"].numpy().tobytes(), request, channels)
    except (ValueError, KeyError, OSError) as exc:
        raise CheckpointError(f"{path} is a damaged scan checkpoint ({type(exc).__name__}); move it away, or scan "
                              f"with --no-resume") from None


@dataclass
class LayerMeans:
    """Per-image spatial-mean activations of a layer over a source (the images that loaded)."""

    acts: np.ndarray                       # [N, C]
    indices: list[int]                     # positions in the source of the N rows
    skipped: list[tuple[int, str]]         # (position, reason) of images that did not load
    embeddings: np.ndarray | None = None   # [N, D] unit-norm image embeddings, when asked for


def layer_means(model: "ClipModel", source: "ImageSource", layer: str, *, batch_size: int = 64,
                num_workers: int | None = None, embeddings: bool = False, progress: Progress = no_progress,
                precision: str = "auto", options: "ScanOptions | None" = None) -> LayerMeans:
    """Stream ``source`` and keep every image's spatial-mean activations of ``layer``.

    Without ``embeddings`` the forward pass stops at ``layer``; with them, one full pass yields both
    (the layer is read by a hook on the way). Use :func:`scan_top_k` instead when only the top
    images per channel are needed: this keeps ``N x C`` numbers.
    """
    return layers_means(model, source, [layer], batch_size=batch_size, num_workers=num_workers,
                        embeddings=embeddings, progress=progress, precision=precision, options=options)[layer]


def layers_means(model: "ClipModel", source: "ImageSource", layers: Sequence[str], *, batch_size: int = 64,
                 num_workers: int | None = None, embeddings: bool = False, progress: Progress = no_progress,
                 precision: str = "auto", options: "ScanOptions | None" = None) -> dict[str, LayerMeans]:
    """:func:`layer_means` of several layers in one pass over ``source``: ``{layer: LayerMeans}``.
    ``options`` (engine, precision, batch size, workers) overrides the separate arguments."""
    from .images import ImageLoadError
    from .engines import run_scan
    from .scan import ScanOptions, ScanRequest

    layers = list(dict.fromkeys(layers))
    options = options or ScanOptions(precision=precision, batch_size=batch_size, num_workers=num_workers)
    request = ScanRequest(tuple(layers), rows=True, embeddings=embeddings)
    partial = run_scan(model, source, request, options, progress=progress,
                       what=f"activations of {', '.join(layers)}")
    indices = sorted(partial.image_indices().tolist())
    skipped = partial.sorted_skipped()
    if not indices:
        raise ImageLoadError(f"no image could be loaded from {source.describe()}: {len(skipped)} skipped"
                             + (f" (first: {skipped[0][1]})" if skipped else ""))
    emb = partial.embedding_rows() if embeddings else None
    return {layer: LayerMeans(partial.layer_rows(layer), list(indices), list(skipped), emb) for layer in layers}


def scan_top_k(
    model: "ClipModel",
    source: "ImageSource",
    layer: str,
    k: int = 16,
    *,
    reduce: str = "mean",
    bottom: bool = False,
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: Progress = no_progress,
    checkpoint: "str | os.PathLike | None" = None,
    checkpoint_every: int = 20,
    precision: str = "auto",
    options: "ScanOptions | None" = None,
) -> TopKActivations:
    """Stream ``source`` through the model up to ``layer`` and keep the top-k images per channel.

    Unreadable images are skipped and listed in ``skipped``; a source where nothing loads is an
    error. ``k`` larger than the number of images keeps them all (with a warning in the result).
    With ``checkpoint``, the scan saves its state there every ``checkpoint_every`` batches and a
    later call with the same arguments resumes from it; the file is removed when the scan ends.
    """
    return scan_layers_top_k(model, source, [layer], k, reduce=reduce, bottom=bottom, batch_size=batch_size,
                             num_workers=num_workers, progress=progress, checkpoint=checkpoint,
                             checkpoint_every=checkpoint_every, precision=precision, options=options)[layer]


def scan_layers_top_k(
    model: "ClipModel",
    source: "ImageSource",
    layers: Sequence[str],
    k: int = 16,
    *,
    reduce: str = "mean",
    bottom: bool = False,
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: Progress = no_progress,
    checkpoint: "str | os.PathLike | None" = None,
    checkpoint_every: int = 20,
    precision: str = "auto",
    options: "ScanOptions | None" = None,
) -> dict[str, TopKActivations]:
    """:func:`scan_top_k` for several layers in one streaming pass (the forward stops after the
    deepest of them): ``{layer: TopKActivations}``. ``options`` (engine, precision, batch size,
    workers) overrides the separate arguments."""
    from .engines import engine_precision, run_scan
    from .scan import ScanOptions, ScanRequest

    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    layers = list(dict.fromkeys(layers))
    options = options or ScanOptions(precision=precision, batch_size=batch_size, num_workers=num_workers)
    request = ScanRequest(tuple(layers), k=k, reduce=reduce, bottom=bottom)
    channels = {layer: model.layer_info(layer).channels for layer in layers}
    total = len(source)
    identity = {"model": model.model_id, "layers": layers, "reduce": reduce, "k": k, "bottom": bottom,
                "images": total, "first": source.record(0).id if total else "",
                "last": source.record(total - 1).id if total else "",
                "precision": engine_precision(model, options), "batch_size": options.batch_size}
    resumed = _load_scan_state(checkpoint, identity, request, channels)
    resumed_at = resumed.loaded + len(resumed.skipped) if resumed else 0
    folded = [0]

    def save(partial) -> None:
        folded[0] += 1
        if checkpoint is not None and folded[0] % checkpoint_every == 0:
            _save_scan_state(checkpoint, identity, partial)

    partial = run_scan(model, source, request, options, progress=progress, what=f"scanning {', '.join(layers)}",
                       resume=resumed, on_batch=save)
    if checkpoint is not None and os.path.exists(checkpoint):
        os.remove(checkpoint)
    loaded = partial.loaded
    skipped = [[source.record(i).id, why] for i, why in partial.sorted_skipped()]
    if not loaded:
        from .images import ImageLoadError

        raise ImageLoadError(f"no image could be loaded from {source.describe()}: {len(skipped)} skipped"
                             + (f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""))
    records = [source.record(i) for i in range(total)]
    warnings = []
    if resumed is not None:
        warnings.append(f"resumed from {checkpoint} at image {resumed_at} of {total}")
    if k > loaded:
        warnings.append(f"k={k} is larger than the {loaded} images that loaded; each channel keeps all of them")
    return {layer: TopKActivations(
        warnings=list(warnings),
        model_id=model.model_id,
        layer=layer,
        reduce=reduce,
        k=k,
        top_values=topk.top_values.numpy(),
        top_indices=topk.top_indices.numpy(),
        bottom_values=topk.bottom_values.numpy() if bottom else None,
        bottom_indices=topk.bottom_indices.numpy() if bottom else None,
        image_ids=[r.id for r in records],
        categories=[r.category for r in records],
        n_images=loaded,
        skipped=skipped,
        precision=partial.precision,
    ) for layer, topk in partial.topk.items()}
