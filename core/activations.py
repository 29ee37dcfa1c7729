"""Activation capture with hooks that never outlive the call, a truncated forward pass, and a
streaming top-k over an image stream.

The forward pass stops as soon as every requested layer has produced its output: a hook raises
a private exception after storing the last one, so layer3 capture never runs layer4. The graph up
to the captured tensors stays intact, so the same capture serves gradient work (feature
visualization, attribution) when called with gradients enabled.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch

from .errors import CheckpointError
from .kinds import Progress, no_progress
from .results import TopKActivations

if TYPE_CHECKING:  # pragma: no cover
    from .images import ImageSource
    from .models import ClipModel


class _StopForward(Exception):
    """Raised by the deepest hook to end the forward pass early (never escapes this module)."""


@contextmanager
def layer_hooks(model: "ClipModel", layers: Sequence[str], *, stop: bool = True) -> Iterator[dict]:
    """Hook ``layers`` for one forward pass; yields the dict that fills with canonical outputs.

    Every hook is removed on exit, also when the forward raises. The model's lock is held from the
    first hook to the last removal, so another thread's forward pass (another app session on the
    same shared model) never runs into these hooks.
    """
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise ValueError("no layer requested")
    modules = {name: model.module(name) for name in layers}  # unknown names fail before any hook
    store: dict[str, torch.Tensor] = {}
    remaining = set(layers)
    handles = []

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            store[name] = model.to_grid(name, output)
            remaining.discard(name)
            if stop and not remaining:
                raise _StopForward

        return hook

    with model.lock:
        try:
            for name, module in modules.items():
                handles.append(module.register_forward_hook(make_hook(name)))
            yield store
        finally:
            for handle in handles:
                handle.remove()


def capture_layers(
    model: "ClipModel", pixels: torch.Tensor, layers: Sequence[str], *, stop: bool = True
) -> dict[str, torch.Tensor]:
    """Run ``pixels`` ([0, 1], ``[B, 3, S, S]``) up to the deepest of ``layers`` and return
    ``{layer: [B, C, H, W]}``. Gradients flow when the caller has them enabled."""
    with layer_hooks(model, layers, stop=stop) as store:
        try:
            model.visual(model.normalize(pixels.to(model.device)))
        except _StopForward:
            pass
    missing = [name for name in layers if name not in store]
    if missing:
        raise RuntimeError(f"layer(s) {', '.join(missing)} produced no output in the visual forward pass")
    return store


def unit_activations(model: "ClipModel", pixels: torch.Tensor, targets: Sequence) -> torch.Tensor:
    """``[B, len(targets)]`` values of Units/Directions (each target's ``read``), one truncated pass."""
    acts = capture_layers(model, pixels, sorted({t.layer for t in targets}))
    return torch.stack([t.read(acts[t.layer]) for t in targets], dim=1)


def layer_gradient(model: "ClipModel", pixels: torch.Tensor, layer: str, score) -> torch.Tensor:
    """Gradient of ``score(image_embeddings) -> [B]`` with respect to ``layer``'s activations, laid
    out as ``[B, C, H, W]``. The zero-shot neuron search: at a neutral image, it ranks the units of
    ``layer`` by how strongly they drive a prompt's logit.

    The layer's output is replaced by a detached copy that requires grad, so this works with frozen
    weights and inputs that need no gradient, on ResNet maps and ViT token sequences alike.
    """
    leaf: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        first = output[0] if isinstance(output, (tuple, list)) else output
        leaf["out"] = first.detach().requires_grad_(True)
        if isinstance(output, tuple):
            return (leaf["out"],) + tuple(output[1:])
        return leaf["out"]

    with model.lock:  # the hook must see only this thread's forward pass
        handle = model.module(layer).register_forward_hook(hook)
        try:
            with torch.enable_grad():
                embeddings = model.forward_visual(pixels)
                (grad,) = torch.autograd.grad(score(embeddings).sum(), leaf["out"])
        finally:
            handle.remove()
    return model.layout(layer)(grad)


def reduce_spatial(acts: torch.Tensor, reduce: str) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, C]`` by spatial ``mean`` or ``max``."""
    if reduce == "mean":
        return acts.mean(dim=(-2, -1))
    if reduce == "max":
        return acts.amax(dim=(-2, -1))
    raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")


def _save_scan_state(path, identity: dict, topks: "dict[str, StreamingTopK]", skipped: list, loaded: int,
                     done: int) -> None:
    tmp = f"{path}.tmp"
    torch.save({"identity": identity, "topk": {name: t.__dict__ for name, t in topks.items()}, "skipped": skipped,
                "loaded": loaded, "done": done}, tmp)
    os.replace(tmp, path)


def _load_scan_state(path, identity: dict) -> dict | None:
    """The saved state of an interrupted scan of the same thing, else None (a stale file is ignored)."""
    if path is None or not os.path.exists(path):
        return None
    try:  # tensors, numbers, strings and lists only: a pickle that would run code is refused, not run
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the file holds, it is not a checkpoint of ours
        raise CheckpointError(f"{path} is not a scan checkpoint that mmneurons can read safely "
                              f"({type(exc).__name__}); move it away, or scan with --no-resume") from None
    if not isinstance(state, dict) or not isinstance(state.get("topk"), dict):
        raise CheckpointError(f"{path} is not a scan checkpoint of mmneurons; move it away, or scan with --no-resume")
    if state.get("identity") != identity:
        return None
    topks = {}
    for name, fields in state["topk"].items():
        if not isinstance(fields, dict):
            raise CheckpointError(f"{path} is not a scan checkpoint of mmneurons; move it away, or scan with "
                                  f"--no-resume")
        topks[name] = StreamingTopK.__new__(StreamingTopK)
        topks[name].__dict__.update(fields)
    return {**state, "topk": topks}


@dataclass
class LayerMeans:
    """Per-image spatial-mean activations of a layer over a source (the images that loaded)."""

    acts: np.ndarray                       # [N, C]
    indices: list[int]                     # positions in the source of the N rows
    skipped: list[tuple[int, str]]         # (position, reason) of images that did not load
    embeddings: np.ndarray | None = None   # [N, D] unit-norm image embeddings, when asked for


def layer_means(model: "ClipModel", source: "ImageSource", layer: str, *, batch_size: int = 64,
                num_workers: int | None = None, embeddings: bool = False,
                progress: Progress = no_progress) -> LayerMeans:
    """Stream ``source`` and keep every image's spatial-mean activations of ``layer``.

    Without ``embeddings`` the forward pass stops at ``layer``; with them, one full pass yields both
    (the layer is read by a hook on the way). Use :func:`scan_top_k` instead when only the top
    images per channel are needed: this keeps ``N x C`` numbers.
    """
    return layers_means(model, source, [layer], batch_size=batch_size, num_workers=num_workers,
                        embeddings=embeddings, progress=progress)[layer]


def layers_means(model: "ClipModel", source: "ImageSource", layers: Sequence[str], *, batch_size: int = 64,
                 num_workers: int | None = None, embeddings: bool = False,
                 progress: Progress = no_progress) -> dict[str, LayerMeans]:
    """:func:`layer_means` of several layers in one pass over ``source``: ``{layer: LayerMeans}``."""
    from .images import ImageLoadError, iterate_batches

    layers = list(dict.fromkeys(layers))
    rows: dict[str, list] = {layer: [] for layer in layers}
    embs, indices, skipped = [], [], []
    what = f"activations of {', '.join(layers)}"
    with torch.inference_mode(), model.lock:
        for batch in iterate_batches(source, model.image_size, batch_size=batch_size, num_workers=num_workers):
            skipped += batch.skipped
            if len(batch.indices):
                if embeddings:
                    with layer_hooks(model, layers, stop=False) as store:
                        embs.append(model.encode_image(batch.pixels).float().cpu())
                    acts = {layer: store[layer] for layer in layers}
                else:
                    acts = capture_layers(model, batch.pixels, layers)
                for layer in layers:
                    rows[layer].append(reduce_spatial(acts[layer], "mean").float().cpu())
                indices += batch.indices.tolist()
            progress(len(indices) + len(skipped), len(source), what)
    if not indices:
        raise ImageLoadError(f"no image could be loaded from {source.describe()}: {len(skipped)} skipped"
                             + (f" (first: {skipped[0][1]})" if skipped else ""))
    emb = torch.cat(embs).numpy() if embeddings else None
    return {layer: LayerMeans(torch.cat(rows[layer]).numpy(), list(indices), list(skipped), emb) for layer in layers}


class StreamingTopK:
    """Running top-k (and optionally bottom-k) per channel over batches; memory O(C x (k + B))."""

    def __init__(self, channels: int, k: int, *, bottom: bool = False) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        self.channels = channels
        self.top_values = torch.empty(channels, 0)
        self.top_indices = torch.empty(channels, 0, dtype=torch.long)
        self.bottom = bottom
        self.bottom_values = torch.empty(channels, 0)
        self.bottom_indices = torch.empty(channels, 0, dtype=torch.long)

    def update(self, values: torch.Tensor, indices: torch.Tensor) -> None:
        """Add a batch: ``values`` ``[B, C]``, ``indices`` ``[B]`` (positions in the stream)."""
        values = values.detach().float().cpu().T  # [C, B]
        idx = indices.detach().cpu().long().expand(self.channels, -1)
        self.top_values, self.top_indices = self._merge(self.top_values, self.top_indices, values, idx, True)
        if self.bottom:
            self.bottom_values, self.bottom_indices = self._merge(
                self.bottom_values, self.bottom_indices, values, idx, False)

    def _merge(self, kept_v, kept_i, new_v, new_i, largest):
        all_v = torch.cat([kept_v, new_v], dim=1)
        all_i = torch.cat([kept_i, new_i], dim=1)
        k = min(self.k, all_v.shape[1])
        vals, pos = torch.topk(all_v, k, dim=1, largest=largest, sorted=True)
        return vals, torch.gather(all_i, 1, pos)


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
) -> TopKActivations:
    """Stream ``source`` through the model up to ``layer`` and keep the top-k images per channel.

    Unreadable images are skipped and listed in ``skipped``; a source where nothing loads is an
    error. ``k`` larger than the number of images keeps them all (with a warning in the result).
    With ``checkpoint``, the scan saves its state there every ``checkpoint_every`` batches and a
    later call with the same arguments resumes from it; the file is removed when the scan ends.
    """
    return scan_layers_top_k(model, source, [layer], k, reduce=reduce, bottom=bottom, batch_size=batch_size,
                             num_workers=num_workers, progress=progress, checkpoint=checkpoint,
                             checkpoint_every=checkpoint_every)[layer]


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
) -> dict[str, TopKActivations]:
    """:func:`scan_top_k` for several layers in one streaming pass (the forward stops after the
    deepest of them): ``{layer: TopKActivations}``."""
    from .images import iterate_batches

    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
    layers = list(dict.fromkeys(layers))
    topks = {layer: StreamingTopK(model.layer_info(layer).channels, k, bottom=bottom) for layer in layers}
    skipped: list[list[str]] = []
    loaded = 0
    total = len(source)
    done = 0
    identity = {"model": model.model_id, "layers": layers, "reduce": reduce, "k": k, "bottom": bottom,
                "images": total, "first": source.record(0).id if total else "",
                "last": source.record(total - 1).id if total else ""}
    state = _load_scan_state(checkpoint, identity)
    if state is not None:
        topks, skipped, loaded, done = state["topk"], state["skipped"], state["loaded"], state["done"]
    what = f"scanning {', '.join(layers)}"
    progress(done, total, what)
    with torch.inference_mode(), model.lock:
        batches = iterate_batches(source, model.image_size, batch_size=batch_size, num_workers=num_workers,
                                  start=done)
        for n, batch in enumerate(batches, start=1):
            skipped += [[source.record(i).id, why] for i, why in batch.skipped]
            if len(batch.indices):
                acts = capture_layers(model, batch.pixels, layers)
                for layer in layers:
                    topks[layer].update(reduce_spatial(acts[layer], reduce), batch.indices)
                loaded += len(batch.indices)
            done += len(batch.indices) + len(batch.skipped)
            if checkpoint is not None and n % checkpoint_every == 0:
                _save_scan_state(checkpoint, identity, topks, skipped, loaded, done)
            progress(done, total, what)
    if checkpoint is not None and os.path.exists(checkpoint):
        os.remove(checkpoint)
    if not loaded:
        from .images import ImageLoadError

        raise ImageLoadError(f"no image could be loaded from {source.describe()}: {len(skipped)} skipped"
                             + (f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""))
    records = [source.record(i) for i in range(total)]
    warnings = []
    if state is not None:
        warnings.append(f"resumed from {checkpoint} at image {state['done']} of {total}")
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
    ) for layer, topk in topks.items()}
