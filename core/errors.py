"""The errors a user can fix, in a module that imports nothing heavy: the command line catches them
(one line, no traceback) without importing torch to do so. Each is re-exported where it is raised."""

from __future__ import annotations

__all__ = ["ImageLoadError", "ModelLoadError", "LayerError", "UnitError", "CheckpointError", "ResultTypeError",
           "OutputError", "AccessError", "EngineError"]


class ImageLoadError(ValueError):
    """An image (or a whole source) that cannot be used; the message names it and says why."""


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded; the message says which, why and what to do."""


class LayerError(ValueError):
    """A layer name that does not exist in the model's visual tower."""


class UnitError(ValueError):
    """A unit that does not parse or does not exist in the model."""


class CheckpointError(ValueError):
    """A resume file that mmneurons did not write, or cannot read without running code from it."""


class ResultTypeError(ValueError):
    """A saved result of a type that no installed code declares: result folders are data, and
    mmneurons builds only result types it knows, never one a file names."""


class OutputError(ValueError):
    """An output path mmneurons will not write to: it would replace something mmneurons did not write."""


class AccessError(ValueError):
    """A file or model outside what this app may reach (``mmneurons app --data`` / ``--allow-model``)."""


class EngineError(RuntimeError):
    """An engine that cannot run here (Ray not installed, a cluster out of reach, a scan it lost)."""
