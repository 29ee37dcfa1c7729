"""The Ray engine: a scan as Ray Data ``map_batches`` over a pool of model actors, on this
machine or a cluster (``--engine ray [--ray-address ADDR]``; Ray is the optional extra
``mmneurons[ray]``).

The dataset's rows are the scan's batch numbers (:func:`mmneurons.scan.batch_range`: the same
cut as the local engine). Tasks decode each batch to uint8 pixels; actors, which load the model
once (shipped through Ray's object store as numpy arrays by :mod:`mmneurons.model_shipping`, so
any model the driver has works, and run on a GPU where the cluster has GPUs), fold a few batches
each into a :class:`~mmneurons.scan.ScanPartial` (top-k per channel, or rows) and emit it as
bytes (arrays and JSON, never pickles). The driver merges partials exactly as they arrive, in any
order, so the result equals the local engine's at the same precision. A block whose worker dies is
retried by Ray (actors restart, tasks retry).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import EngineError
from .hardware import resolve_precision
from .kinds import Progress, no_progress
from .model_shipping import pack_model
from .scan import ScanOptions, ScanPartial, ScanRequest, ScanTower, batch_range, n_batches

if TYPE_CHECKING:  # pragma: no cover
    from .images import ImageSource
    from .models import ClipModel

__all__ = ["ray_scan", "connect", "pool_plan", "actor_device"]

#: images folded into one partial by an actor call (fewer partials to ship; finer retries below it)
_IMAGES_PER_PARTIAL = 256


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate extra of Ray
    except ImportError:
        raise EngineError("--engine ray needs Ray Data: install the extra, e.g. pip install 'mmneurons[ray]'") from None
    return ray


def connect(address: str | None = None) -> Any:
    """Ray, joined to ``address`` (a cluster's ``HOST:PORT`` or ``auto``), or to the Ray already
    running in this process, or to a new local Ray. Returns the ``ray`` module."""
    ray = _import_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="warning")
        except ConnectionError as exc:
            raise EngineError(f"cannot reach a Ray cluster at {address}: {exc}") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the scan reports its own progress
    return ray


def pool_plan(resources: dict, actors: int | None = None) -> dict:
    """Actors and their resources for a cluster with ``resources`` (``ray.cluster_resources()``):
    one actor per GPU where there are GPUs; else ``actors`` (default: one per 4 CPUs), sharing the
    CPUs less one left to the decoding tasks (two actors each holding one of two CPUs would leave
    the decoding tasks none, and the scan would wait forever)."""
    gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    if gpus:
        count = actors or gpus
        return {"actors": count, "num_gpus": min(1.0, gpus / count), "num_cpus": 1.0, "device": "cuda", "threads": 1}
    count = actors or max(1, int(cpus // 4))
    share = max(0.25, (cpus - 1) / count) if cpus > 1 else 0.5
    # the reservation leaves a CPU to decoding, but torch in each actor may use its whole share of the
    # CPUs: decoding an image costs a small part of running it through the model
    threads = max(1, int(cpus // count))
    return {"actors": count, "num_gpus": 0.0, "num_cpus": round(share, 2), "device": "cpu", "threads": threads}


def actor_device(options: ScanOptions) -> str:
    """The device the scan's actors run the model on (connects to Ray)."""
    ray = connect(options.ray_address)
    return pool_plan(ray.cluster_resources(), options.ray_actors)["device"]


def _decode(rows: dict[str, np.ndarray], source: "ImageSource", size: int, batch_size: int) -> dict[str, np.ndarray]:
    """Tasks: each row's image batch -> uint8 pixels ``[B, S, S, 3]`` (padded), positions (-1:
    padding) and the images that did not load, as JSON."""
    from .images import ImageLoadError, to_pixel_array

    numbers = rows["batch"]
    pixels = np.zeros((len(numbers), batch_size, size, size, 3), np.uint8)
    indices = np.full((len(numbers), batch_size), -1, np.int64)
    skipped = []
    for r, number in enumerate(numbers):
        bad, slot = [], 0
        for i in batch_range(int(number), batch_size, len(source)):
            try:
                pixels[r, slot] = to_pixel_array(source.load(i), size)
            except ImageLoadError as exc:
                bad.append((i, str(exc)))
                continue
            indices[r, slot] = i
            slot += 1
        skipped.append(json.dumps(bad))
    return {"batch": numbers, "pixels": pixels, "indices": indices, "skipped": np.array(skipped, dtype=object)}


class _ScanActor:
    """Actors: the model, loaded once, and its scan tower; folds its rows' batches into one partial."""

    def __init__(self, model_ref: list, request: ScanRequest, precision: str, device: str, threads: int) -> None:
        import ray

        torch.set_num_threads(max(1, threads))
        model = ray.get(model_ref[0]).unpack()
        if device != "cpu":
            model = model.to(device)
        self.request = request
        self.tower = ScanTower(model, request.layers, precision)

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .images import pixels_from_array

        partial = ScanPartial(self.request, self.tower.channels)
        images = 0
        with self.tower.held():
            for number, pixels, indices, skipped in zip(rows["batch"], rows["pixels"], rows["indices"],
                                                         rows["skipped"]):
                loaded = int((indices >= 0).sum())
                acts, emb = self.tower.forward(pixels_from_array(pixels[:loaded]), self.request.embeddings) \
                    if loaded else ({}, None)
                bad = [tuple(item) for item in json.loads(skipped)]
                partial.add(int(number), acts, emb, torch.from_numpy(indices[:loaded].copy()), bad)
                images += loaded + len(bad)
        return {"partial": np.array([partial.to_bytes()], dtype=object), "images": np.array([images])}


def ray_scan(model: "ClipModel", source: "ImageSource", request: ScanRequest, options: ScanOptions, *,
             progress: Progress = no_progress, what: str = "scanning", resume: ScanPartial | None = None,
             on_batch=None) -> ScanPartial:
    """:func:`mmneurons.scan.run_scan` on Ray (see the module's docstring)."""
    ray = connect(options.ray_address)
    plan = pool_plan(ray.cluster_resources(), options.ray_actors)
    precision = resolve_precision(plan["device"], model.image_size, options.precision)
    channels = {layer: model.layer_info(layer).channels for layer in request.layers}
    merged = resume if resume is not None else ScanPartial(request, channels)
    merged.precision = precision
    total, size = len(source), options.batch_size
    todo = [b for b in range(n_batches(total, size)) if b not in merged.batches]
    done = total - sum(len(batch_range(b, size, total)) for b in todo)
    progress(done, total, what)
    if not todo:
        return merged
    cpu_model = model if model.device.type == "cpu" else _on_cpu(model)
    model_ref = ray.put(pack_model(cpu_model))  # numpy arrays: no torch pickling, shared by a node's actors
    per_call = max(1, min(8, _IMAGES_PER_PARTIAL // size))
    data = ray.data.from_items([{"batch": b} for b in todo], override_num_blocks=min(len(todo), 1000))
    # decoding: CPU tasks that overlap the actors (Ray fuses them into the actors where both ask for
    # the same resources: one CPU each, on a CPU-only cluster with as many actors as spare CPUs)
    data = data.map_batches(_decode, batch_size=1, fn_kwargs={"source": source, "size": model.image_size,
                                                              "batch_size": size}, num_cpus=1)
    data = data.map_batches(
        _ScanActor, batch_size=per_call, compute=ray.data.ActorPoolStrategy(size=plan["actors"]),
        fn_constructor_kwargs={"model_ref": [model_ref], "request": request, "precision": precision,
                               "device": plan["device"], "threads": plan["threads"]},
        num_cpus=plan["num_cpus"], num_gpus=plan["num_gpus"] or None)
    for row in data.iter_rows():
        part = ScanPartial.from_bytes(bytes(row["partial"]), request, channels)
        merged.merge(part)
        done += int(row["images"])
        if on_batch is not None:
            on_batch(merged)
        progress(done, total, what)
    missing = set(todo) - merged.batches
    if missing:
        raise EngineError(f"the Ray scan returned without batches {sorted(missing)[:5]}; run it again to resume")
    return merged


def _on_cpu(model: "ClipModel") -> "ClipModel":
    import copy

    moved = copy.deepcopy(model)
    return moved.to("cpu")

