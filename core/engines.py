"""Where a scan runs: :func:`run_scan` hands a :class:`~mmneurons.scan.ScanRequest` to the engine
its :class:`~mmneurons.scan.ScanOptions` name (``local``: :func:`mmneurons.scan.local_scan`;
``ray``: :func:`mmneurons.ray_engine.ray_scan`, imported only when asked for)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .hardware import resolve_precision
from .kinds import Progress, no_progress
from .scan import ScanOptions, ScanPartial, ScanRequest, local_scan

if TYPE_CHECKING:  # pragma: no cover
    from .images import ImageSource
    from .models import ClipModel

__all__ = ["run_scan", "engine_precision"]


def engine_precision(model: "ClipModel", options: ScanOptions) -> str:
    """The precision a scan with ``options`` computes in: ``auto`` resolved for the device the
    engine runs the model on (Ray: its actors' device, which may be a GPU this process lacks)."""
    if options.engine == "ray":
        from .ray_engine import actor_device

        return resolve_precision(actor_device(options), model.image_size, options.precision)
    return resolve_precision(model.device, model.image_size, options.precision)


def run_scan(model: "ClipModel", source: "ImageSource", request: ScanRequest, options: ScanOptions | None = None,
             *, progress: Progress = no_progress, what: str = "scanning",
             resume: ScanPartial | None = None, on_batch=None) -> ScanPartial:
    """Scan ``source`` and return the merged :class:`ScanPartial` of all its batches.

    ``resume``: a partial saved earlier (its batches are not run again). ``on_batch(partial)``:
    called after each batch the engine folds in (the local engine: every batch; Ray: every block),
    e.g. to checkpoint. ``options`` default: local, auto precision.
    """
    options = options or ScanOptions()
    if options.engine == "ray":
        from .ray_engine import ray_scan

        return ray_scan(model, source, request, options, progress=progress, what=what, resume=resume,
                        on_batch=on_batch)
    return local_scan(model, source, request, options, progress=progress, what=what, resume=resume,
                      on_batch=on_batch)
