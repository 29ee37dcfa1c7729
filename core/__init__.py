"""mmneurons: find and explain multimodal neurons in CLIP models.

The public API, for plugin authors and Python users alike::

    import mmneurons
    model = mmneurons.load_model("demo:shapes")
    result = mmneurons.get_registry().get("mmneurons_probes", "modality").run(model, "layer4.0", source, {})

Names are imported on first use, so ``import mmneurons`` (and the ``mmneurons`` command's start)
loads no torch. The analyses themselves are :mod:`mmneurons.analysis`; the Captum wrappers,
:mod:`mmneurons.captum`; every ``mmneurons._*`` module is internal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # writing plugins
    "hookimpl": "hookspecs", "ModelProvider": "kinds", "ImageSourceFactory": "kinds", "Visualizer": "kinds",
    "Attributor": "kinds", "Probe": "kinds", "Renderer": "kinds", "SAESource": "kinds", "Progress": "kinds",
    "no_progress": "kinds",
    "Param": "params", "ParamError": "params", "get_registry": "registry",
    # models, targets, images
    "ClipModel": "models", "load_model": "models", "Unit": "units", "Direction": "units",
    "ImageSource": "images", "ImageRecord": "images", "FolderSource": "images", "ListSource": "images",
    "WordSource": "images", "WebDatasetSource": "dataset_sources", "ParquetSource": "dataset_sources",
    # activations
    "capture_layers": "activations", "layer_means": "activations", "scan_top_k": "activations",
    "scan_layers_top_k": "activations", "ScanOptions": "scan",
    # the atlas
    "Atlas": "atlas", "BuildOptions": "atlas", "build_atlas": "atlas",
    # results
    "Result": "results", "FeatureVis": "results", "AttributionMap": "results", "ProbeResult": "results",
    "TopKActivations": "results", "UnitContributions": "results", "load_result": "results",
    # Captum reuse
    "UnitForward": "captum", "ZeroShotForward": "captum", "SimilarityForward": "captum",
    "VisualForward": "captum", "unit_selector": "captum", "layer_of": "captum",
    # errors users can fix
    "ImageLoadError": "errors", "ModelLoadError": "errors", "LayerError": "errors", "UnitError": "errors",
    "EngineError": "errors",
}

__all__ = [
    "__version__", "hookimpl", "ModelProvider", "ImageSourceFactory", "Visualizer", "Attributor", "Probe",
    "Renderer", "SAESource", "Progress", "no_progress", "Param", "ParamError", "get_registry", "ClipModel",
    "load_model", "Unit",
    "Direction", "ImageSource", "ImageRecord", "FolderSource", "ListSource", "WordSource", "WebDatasetSource",
    "ParquetSource", "capture_layers", "layer_means", "scan_top_k", "scan_layers_top_k", "ScanOptions", "Atlas",
    "BuildOptions", "build_atlas", "Result", "FeatureVis", "AttributionMap", "ProbeResult", "TopKActivations",
    "UnitContributions", "load_result", "UnitForward", "ZeroShotForward", "SimilarityForward", "VisualForward",
    "unit_selector", "layer_of", "ImageLoadError", "ModelLoadError", "LayerError", "UnitError",
    "EngineError",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmneurons' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and editors
    from .activations import capture_layers, layer_means, scan_layers_top_k, scan_top_k
    from .atlas import Atlas, BuildOptions, build_atlas
    from .captum import SimilarityForward, UnitForward, VisualForward, ZeroShotForward, layer_of, unit_selector
    from .dataset_sources import ParquetSource, WebDatasetSource
    from .errors import EngineError, ImageLoadError, LayerError, ModelLoadError, UnitError
    from .hookspecs import hookimpl
    from .images import FolderSource, ImageRecord, ImageSource, ListSource, WordSource
    from .kinds import (Attributor, ImageSourceFactory, ModelProvider, Probe, Progress, Renderer, SAESource,
                        Visualizer, no_progress)
    from .models import ClipModel, load_model
    from .params import Param, ParamError
    from .registry import get_registry
    from .scan import ScanOptions
    from .results import (AttributionMap, FeatureVis, ProbeResult, Result, TopKActivations, UnitContributions,
                          load_result)
    from .units import Direction, Unit
