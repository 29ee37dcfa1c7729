"""The one scan: an image source streamed through the layers a question needs, folded per image
into top-k and bottom-k per channel, or kept as per-image rows.

Every caller goes through here: ``mmneurons activations``, the atlas's examples stage and the
probes that stream a source (:func:`mmneurons.activations.scan_layers_top_k`,
:func:`mmneurons.activations.layers_means`). What runs is the *scan tower*: on a ResNet the
private, BatchNorm-folded copy of the visual tower that feature visualization renders through
(packed oneDNN convolutions on CPU; bf16 + channels_last when the precision is bf16), under
``torch.inference_mode``, stopped after the deepest layer asked for. Where batches run is the
*engine* (:mod:`mmneurons.engines`): ``local`` (:func:`local_scan`: this process, decoding in
DataLoader workers) or ``ray`` (:mod:`mmneurons.ray_engine`, Ray Data over an actor pool).

Both engines cut the source into the same image batches (batch ``j`` holds images
``j * batch_size`` up to the next multiple) and fold each batch with :meth:`ScanPartial.add`;
partials merge exactly (ties broken by image position), so the engines give the same numbers at
the same precision whatever order batches finish in.
"""

from __future__ import annotations

import io
import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from .hardware import resolve_precision
from .kinds import Progress, no_progress

if TYPE_CHECKING:  # pragma: no cover
    from .images import ImageSource
    from .models import ClipModel

__all__ = ["ENGINES", "ScanOptions", "ScanRequest", "ScanPartial", "ScanTower", "StreamingTopK", "local_scan",
           "n_batches", "batch_range"]

#: where a scan's batches run
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class ScanOptions:
    """How a scan runs (not what it computes): the same request gives the same result under any
    options of one precision."""

    precision: str = "auto"         # auto | fp32 | bf16 | fp16 (GPU); auto follows the hardware
    batch_size: int = 32
    num_workers: int | None = None  # local engine: DataLoader processes decoding images (None: by size)
    engine: str = "local"           # local | ray
    ray_address: str | None = None  # ray: a cluster to join (None: a running local Ray, else a new one)
    ray_actors: int | None = None   # ray: model actors (None: one per GPU, else by the cluster's CPUs)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class ScanRequest:
    """What a scan computes per layer: top-k (and bottom-k) images per channel of the spatially
    reduced activations, and/or every image's spatial-mean row, and/or the image embeddings."""

    layers: tuple[str, ...]
    k: int = 0                # 0: no top-k
    reduce: str = "mean"      # spatial reduction the top-k ranks by: mean | max
    bottom: bool = False
    rows: bool = False        # keep each image's spatial-mean activations ([N, C] per layer)
    embeddings: bool = False  # keep each image's unit-norm embedding (a full forward pass)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("no layer requested")
        if self.reduce not in ("mean", "max"):
            raise ValueError(f"reduce must be 'mean' or 'max', got {self.reduce!r}")
        if self.k < 0:
            raise ValueError(f"k must be 0 (no top-k) or more, got {self.k}")


def n_batches(n_images: int, batch_size: int) -> int:
    return -(-n_images // batch_size)


def batch_range(batch: int, batch_size: int, n_images: int) -> range:
    """The image positions of batch number ``batch``: the same cut for every engine."""
    return range(batch * batch_size, min((batch + 1) * batch_size, n_images))


# -- top-k that merges exactly --------------------------------------------------------------------
class StreamingTopK:
    """Running top-k (and optionally bottom-k) per channel over batches; memory O(C x (k + B)).

    Equal values rank by image position (lower first), so the result does not depend on the order
    in which batches or partial results arrive: :meth:`merge` of partials equals one stream.
    """

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
        self._add(values, idx, values, idx)

    def merge(self, other: "StreamingTopK") -> None:
        """Fold another partial of the same channels and k (disjoint images) into this one."""
        if (other.channels, other.k, other.bottom) != (self.channels, self.k, self.bottom):
            raise ValueError("only top-k partials of the same channels, k and bottom merge")
        self._add(other.top_values, other.top_indices, other.bottom_values, other.bottom_indices)

    def _add(self, top_v, top_i, bottom_v, bottom_i) -> None:
        self.top_values, self.top_indices = self._merge(self.top_values, self.top_indices, top_v, top_i, True)
        if self.bottom:
            self.bottom_values, self.bottom_indices = self._merge(
                self.bottom_values, self.bottom_indices, bottom_v, bottom_i, False)

    def _merge(self, kept_v, kept_i, new_v, new_i, largest):
        all_v = torch.cat([kept_v, new_v], dim=1)
        all_i = torch.cat([kept_i, new_i], dim=1)
        # by position first, then a stable sort by value: ties keep the lower position first
        by_index = torch.argsort(all_i, dim=1, stable=True)
        all_v, all_i = torch.gather(all_v, 1, by_index), torch.gather(all_i, 1, by_index)
        order = torch.argsort(all_v, dim=1, descending=largest, stable=True)[:, :self.k]
        return torch.gather(all_v, 1, order), torch.gather(all_i, 1, order)

    def state(self) -> dict[str, np.ndarray]:
        return {"top_values": self.top_values.numpy(), "top_indices": self.top_indices.numpy(),
                "bottom_values": self.bottom_values.numpy(), "bottom_indices": self.bottom_indices.numpy()}

    @classmethod
    def from_state(cls, state: dict, k: int, bottom: bool) -> "StreamingTopK":
        top_values = torch.as_tensor(np.asarray(state["top_values"], dtype=np.float32))
        topk = cls(top_values.shape[0], k, bottom=bottom)
        topk.top_values = top_values
        topk.top_indices = torch.as_tensor(np.asarray(state["top_indices"], dtype=np.int64))
        topk.bottom_values = torch.as_tensor(np.asarray(state["bottom_values"], dtype=np.float32))
        topk.bottom_indices = torch.as_tensor(np.asarray(state["bottom_indices"], dtype=np.int64))
        return topk


# -- what a set of batches contributes ------------------------------------------------------------
@dataclass
class ScanPartial:
    """The scan's result over some of the source's batches; partials of disjoint batches merge."""

    request: ScanRequest
    channels: dict[str, int]
    topk: dict[str, StreamingTopK] = field(default_factory=dict)
    rows: dict[str, list[np.ndarray]] = field(default_factory=dict)
    embeddings: list[np.ndarray] = field(default_factory=list)
    indices: list[np.ndarray] = field(default_factory=list)  # positions of the images that loaded
    skipped: list[tuple[int, str]] = field(default_factory=list)
    batches: set[int] = field(default_factory=set)           # batch numbers folded in
    precision: str = ""                                      # what the engine computed in

    def __post_init__(self) -> None:
        if self.request.k and not self.topk:
            self.topk = {layer: StreamingTopK(self.channels[layer], self.request.k, bottom=self.request.bottom)
                         for layer in self.request.layers}

    @property
    def loaded(self) -> int:
        return int(sum(len(i) for i in self.indices))

    def add(self, batch: int, acts: dict[str, torch.Tensor], embeddings: torch.Tensor | None,
            indices: torch.Tensor, skipped: Sequence[tuple[int, str]]) -> None:
        """Fold one image batch: ``acts`` ``{layer: [B, C, H, W]}`` of the images at ``indices``."""
        self.batches.add(int(batch))
        self.skipped += [(int(i), str(why)) for i, why in skipped]
        if not len(indices):
            return
        self.indices.append(indices.cpu().numpy().astype(np.int64))
        for layer in self.request.layers:
            grid = acts[layer].float()
            if self.request.k:
                pooled = grid.amax(dim=(-2, -1)) if self.request.reduce == "max" else grid.mean(dim=(-2, -1))
                self.topk[layer].update(pooled, indices)
            if self.request.rows:
                self.rows.setdefault(layer, []).append(grid.mean(dim=(-2, -1)).cpu().numpy())
        if self.request.embeddings:
            self.embeddings.append(embeddings.float().cpu().numpy())

    def merge(self, other: "ScanPartial") -> None:
        if other.request != self.request:
            raise ValueError("only partials of the same scan request merge")
        if self.batches & other.batches:
            raise ValueError(f"batches {sorted(self.batches & other.batches)[:5]} were folded in twice")
        self.batches |= other.batches
        self.skipped += other.skipped
        self.indices += other.indices
        for layer, topk in other.topk.items():
            self.topk[layer].merge(topk)
        for layer, rows in other.rows.items():
            self.rows.setdefault(layer, []).extend(rows)
        self.embeddings += other.embeddings

    # -- rows in source order ---------------------------------------------------------------------
    def image_indices(self) -> np.ndarray:
        return np.concatenate(self.indices) if self.indices else np.zeros(0, np.int64)

    def _ordered(self, blocks: list[np.ndarray], width: int) -> np.ndarray:
        if not blocks:
            return np.zeros((0, width), np.float32)
        order = np.argsort(self.image_indices(), kind="stable")
        return np.concatenate(blocks)[order]

    def layer_rows(self, layer: str) -> np.ndarray:
        return self._ordered(self.rows.get(layer, []), self.channels[layer])

    def embedding_rows(self) -> np.ndarray:
        return self._ordered(self.embeddings, 0)

    def sorted_skipped(self) -> list[tuple[int, str]]:
        return sorted(self.skipped)

    # -- bytes (Ray blocks, checkpoints): arrays and JSON only, never pickles ----------------------
    def to_bytes(self) -> bytes:
        arrays = {"indices": self.image_indices(), "batches": np.array(sorted(self.batches), dtype=np.int64)}
        for n, layer in enumerate(self.request.layers):
            if self.request.k:
                arrays.update({f"{n}.{key}": value for key, value in self.topk[layer].state().items()})
            if self.request.rows:
                rows = self.rows.get(layer, [])
                arrays[f"{n}.rows"] = np.concatenate(rows) if rows else np.zeros((0, self.channels[layer]), np.float32)
        if self.request.embeddings:
            arrays["embeddings"] = np.concatenate(self.embeddings) if self.embeddings else np.zeros((0, 0), np.float32)
        arrays["skipped"] = np.frombuffer(json.dumps(self.skipped).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, request: ScanRequest, channels: dict[str, int]) -> "ScanPartial":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            part = cls(request, channels)
            part.batches = {int(b) for b in z["batches"]}
            part.skipped = [(int(i), str(why)) for i, why in json.loads(z["skipped"].tobytes().decode())]
            indices = z["indices"]
            part.indices = [indices] if len(indices) else []
            for n, layer in enumerate(request.layers):
                if request.k:
                    part.topk[layer] = StreamingTopK.from_state(
                        {key: z[f"{n}.{key}"] for key in ("top_values", "top_indices", "bottom_values",
                                                          "bottom_indices")}, request.k, request.bottom)
                if request.rows and len(indices):
                    part.rows[layer] = [z[f"{n}.rows"]]
            if request.embeddings and len(indices):
                part.embeddings = [z["embeddings"]]
        return part


# -- the model a scan runs --------------------------------------------------------------------------
class ScanTower:
    """``model`` prepared to scan ``layers`` at one precision: the fast tower, the autocast that
    goes with it and the truncated forward, under ``torch.inference_mode``."""

    def __init__(self, model: "ClipModel", layers: Sequence[str], precision: str = "auto") -> None:
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        self.precision = resolve_precision(model.device, model.image_size, precision)
        # NHWC in every precision: a forward-only pass gains from it on CPU (docs/benchmarks.md)
        self.channels_last = model.kind == "resnet"
        self.tower = model.kept_tower("scan_tower", self.precision, self.layers, channels_last=self.channels_last)
        self.channels = {layer: model.layer_info(layer).channels for layer in self.layers}

    def autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.model.device.type, dtype=dtype)

    def forward(self, pixels: torch.Tensor, embeddings: bool = False
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """``({layer: [B, C, H, W]}, unit-norm embeddings or None)`` of ``pixels`` in [0, 1]."""
        from .capture import capture_layers, layer_hooks

        pixels = pixels.to(self.model.device, non_blocking=True)
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self.autocast():
            if not embeddings:
                return capture_layers(self.tower, pixels, self.layers), None
            with layer_hooks(self.tower, self.layers, stop=False) as store:
                emb = self.tower.encode_image(pixels)
            return dict(store), emb

    def held(self):
        """The tower's lock: the shared model's own where the tower is the model (ViT)."""
        return self.tower.lock


# -- the local engine ------------------------------------------------------------------------------
def local_scan(model: "ClipModel", source: "ImageSource", request: ScanRequest, options: ScanOptions,
               *, progress: Progress = no_progress, what: str = "scanning", resume: ScanPartial | None = None,
               on_batch=None) -> ScanPartial:
    """The scan in this process: DataLoader workers decode while the model runs."""
    from .images import iterate_batches

    tower = ScanTower(model, request.layers, options.precision)
    partial = resume if resume is not None else ScanPartial(request, tower.channels)
    partial.precision = tower.precision
    total, size = len(source), options.batch_size
    todo = [b for b in range(n_batches(total, size)) if b not in partial.batches]
    done = total - sum(len(batch_range(b, size, total)) for b in todo)
    progress(done, total, what)
    with tower.held():
        batches = iterate_batches(source, model.image_size, batch_size=size, num_workers=options.num_workers,
                                  batches=todo, pin_memory=model.device.type == "cuda")
        for number, batch in zip(todo, batches):
            acts, emb = tower.forward(batch.pixels, request.embeddings) if len(batch.indices) else ({}, None)
            partial.add(number, acts, emb, batch.indices, batch.skipped)
            done += len(batch.indices) + len(batch.skipped)
            if on_batch is not None:
                on_batch(partial)
            progress(done, total, what)
    return partial
