"""Result dataclasses and their files.

Every result is a dataclass with a ``kind`` (the app draws it with the renderer registered for that
kind). ``save`` writes a folder: ``result.json`` (fields, with the class path so ``load`` can
rebuild it; strict JSON that any parser reads: a NaN or infinite number is written as ``null``),
``arrays.npz`` for arrays (which keep them as they are) and one PNG per image. Writes are atomic: the folder is
built under a temporary name and renamed into place, so an interrupted save never leaves half a
result where a complete one is expected.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

FORMAT_VERSION = 1


@dataclass
class Result:
    """Base of all results: a ``kind`` and warnings worth showing next to the numbers."""

    kind: ClassVar[str] = "result"
    warnings: list[str] = field(default_factory=list, kw_only=True)

    def save(self, path: str | os.PathLike) -> Path:
        """Write this result as a folder at ``path`` (replacing an older one atomically)."""
        return save_result(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Result":
        result = load_result(path)
        if not isinstance(result, cls):
            raise TypeError(f"{path} holds a {type(result).__name__}, not a {cls.__name__}")
        return result


def _encode(value: Any, key: str, arrays: dict, images: dict) -> Any:
    from .units import Direction, Unit

    if isinstance(value, np.ndarray) or type(value).__module__ == "torch" and hasattr(value, "numpy"):
        arrays[key] = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
        return {"$array": key}
    if isinstance(value, Image.Image):
        name = f"{key}.png"
        images[name] = value
        return {"$image": name}
    if isinstance(value, Unit):
        return {"$unit": value.to_dict()}
    if isinstance(value, Direction):
        arrays[key] = value.vector
        return {"$direction": {"layer": value.layer, "label": value.label, "vector": key}}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{key}.{i}", arrays, images) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _encode(v, f"{key}.{k}", arrays, images) for k, v in value.items()}
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None  # strict JSON: NaN and infinities are null
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"$dataclass": _class_path(type(value)),
                "fields": {f.name: _encode(getattr(value, f.name), f"{key}.{f.name}", arrays, images)
                           for f in dataclasses.fields(value)}}
    return value


def _decode(value: Any, arrays: Any, folder: Path) -> Any:
    from .units import Direction, Unit

    if isinstance(value, list):
        return [_decode(v, arrays, folder) for v in value]
    if isinstance(value, dict):
        if "$array" in value:
            return arrays[value["$array"]]
        if "$image" in value:
            with Image.open(folder / value["$image"]) as img:
                img.load()
                return img.copy()
        if "$unit" in value:
            return Unit.from_dict(value["$unit"])
        if "$direction" in value:
            d = value["$direction"]
            return Direction(d["layer"], arrays[d["vector"]], d.get("label", ""))
        if "$dataclass" in value:
            cls = _import_class(value["$dataclass"])
            return cls(**{k: _decode(v, arrays, folder) for k, v in value["fields"].items()})
        return {k: _decode(v, arrays, folder) for k, v in value.items()}
    return value


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _import_class(path: str) -> type:
    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def save_result(result: Result, path: str | os.PathLike) -> Path:
    """Write ``result`` to the folder ``path`` atomically; return the path."""
    if not dataclasses.is_dataclass(result):
        raise TypeError(f"can only save dataclass results, got {type(result).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    images: dict[str, Image.Image] = {}
    fields = {f.name: _encode(getattr(result, f.name), f.name, arrays, images) for f in dataclasses.fields(result)}
    doc = {"format": FORMAT_VERSION, "type": _class_path(type(result)), "kind": result.kind, "fields": fields}
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        (tmp / "result.json").write_text(json.dumps(doc, indent=1, default=_json_default, allow_nan=False))
        if arrays:
            np.savez(tmp / "arrays.npz", **arrays)
        for name, img in images.items():
            img.save(tmp / name)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in result.json")


def load_result(path: str | os.PathLike) -> Result:
    """Rebuild a result saved with :func:`save_result`."""
    folder = Path(path)
    meta = folder / "result.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{folder} is not a saved result (no result.json)")
    doc = json.loads(meta.read_text())
    if doc.get("format") != FORMAT_VERSION:
        raise ValueError(f"{folder}: unsupported result format {doc.get('format')!r}")
    cls = _import_class(doc["type"])
    arrays = {}
    if (folder / "arrays.npz").exists():
        with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    return cls(**{k: _decode(v, arrays, folder) for k, v in doc["fields"].items()})


def image_to_png_bytes(image: Image.Image) -> bytes:
    """PNG bytes of an image (for downloads)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class AttributionMap(Result):
    """How much each input pixel contributed to a target, for one image and one method.

    ``attribution`` has the input's shape ``[3, H, W]`` (or ``[1, H, W]`` for Grad-CAM, upsampled);
    ``heat`` is the positive evidence summed over channels ``[H, W]`` and ``overlay`` draws it.
    ``convergence_delta`` is Captum's completeness gap where the method defines one.
    """

    kind = "attribution_map"

    model_id: str = ""
    method: str = ""
    target: str = ""
    image_id: str = ""
    image: Image.Image | None = None
    attribution: np.ndarray | None = None
    heat: np.ndarray | None = None
    overlay: Image.Image | None = None
    target_value: float | None = None
    baseline_value: float | None = None
    convergence_delta: float | None = None
    params: dict = field(default_factory=dict)

    @classmethod
    def build(cls, image: Image.Image, attribution: np.ndarray, **fields: Any) -> "AttributionMap":
        from .overlay import heatmap_overlay

        heat = np.clip(attribution.sum(axis=0), 0, None)
        return cls(image=image, attribution=attribution, heat=heat, overlay=heatmap_overlay(image, heat), **fields)


@dataclass
class FeatureVis(Result):
    """A feature visualization of one target (unit, direction or text direction).

    ``activation`` is the target's value on the final image; ``activation_gray`` and
    ``activation_noise`` are its values on a gray and a random-noise image, for scale.
    ``snapshots`` are the images at ``thresholds`` (optimization steps).
    """

    kind = "feature_vis"

    model_id: str = ""
    method: str = ""
    target: str = ""
    image: Image.Image | None = None
    snapshots: list = field(default_factory=list)
    thresholds: list[int] = field(default_factory=list)
    activation: float = 0.0
    activation_gray: float = 0.0
    activation_noise: float = 0.0
    loss_curve: np.ndarray | None = None
    params: dict = field(default_factory=dict)


@dataclass
class ProbeResult(Result):
    """What a probe found: named tables (lists of row dicts), arrays, images with captions and a
    summary. One shape for every probe, so the CLI and the app can show any of them."""

    kind = "probe"

    probe: str = ""
    model_id: str = ""
    target: str = ""
    summary: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)
    images: list = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    def table(self, name: str) -> list[dict]:
        if name not in self.tables:
            raise KeyError(f"{self.probe} result has no table {name!r}; tables: {', '.join(self.tables)}")
        return self.tables[name]
