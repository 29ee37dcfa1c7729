"""Result dataclasses and their files.

Every result is a dataclass with a ``kind`` (the app draws it with the renderer registered for that
kind). ``save`` writes a folder: ``result.json`` (fields and the type's name; strict JSON that any
parser reads: a NaN or infinite number is written as ``null``), ``arrays.npz`` for arrays (which
keep them as they are) and one PNG per image. Writes are atomic: the folder is built under a
temporary name and renamed into place, so an interrupted save never leaves half a result where a
complete one is expected, and a save replaces only an earlier result of the same kind. Reading
builds only known types: a result folder is data, and reading one runs no code.
"""

from __future__ import annotations

import dataclasses
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

from .errors import OutputError, ResultTypeError

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
        """Read a result saved as this class (or a known subclass of it) back."""
        try:
            result = load_result(path, extra_types=(cls,))
        except ResultTypeError:
            saved = json.loads((Path(path) / "result.json").read_text()).get("type")
            if saved == _class_path(cls):
                raise  # the right type, with an unknown type nested in it: the refusal says why
            raise TypeError(f"{path} holds a {str(saved).rpartition(':')[2]}, not a {cls.__name__}") from None
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


def _decode(value: Any, arrays: Any, folder: Path, known: dict[str, type] | None = None) -> Any:
    from .units import Direction, Unit

    if isinstance(value, list):
        return [_decode(v, arrays, folder, known) for v in value]
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
            cls = _known_type(value["$dataclass"], known or {}, folder)
            return cls(**{k: _decode(v, arrays, folder, known) for k, v in value["fields"].items()})
        return {k: _decode(v, arrays, folder, known) for k, v in value.items()}
    return value


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def known_result_types(extra: tuple[type, ...] = ()) -> dict[str, type]:
    """The result classes :func:`load_result` may build, by the name ``result.json`` gives them:
    the core's, those that registered plugin objects declare in ``result_types``, and ``extra``."""
    from .kinds import HOOK_KINDS
    from .registry import get_registry

    types: list[Any] = [*CORE_RESULT_TYPES, *extra]
    registry = get_registry()
    for hook in HOOK_KINDS:
        if hook != "mmneurons_commands":
            for obj in registry.collect(hook):
                types += list(getattr(obj, "result_types", None) or ())
    known = {_class_path(t): t for t in types if isinstance(t, type) and dataclasses.is_dataclass(t)}
    return {**_MOVED, **known}


def _known_type(name: Any, known: dict[str, type], folder: Path) -> type:
    if isinstance(name, str) and name in known:
        return known[name]
    raise ResultTypeError(f"{folder} holds a result of type {name!r}, which no installed code declares; "
                          f"result folders are data, and only known result types are read "
                          f"({', '.join(sorted(t.__name__ for t in known.values()))})")


def saved_kind(path: str | os.PathLike) -> str | None:
    """The ``kind`` of the result saved in folder ``path``, or None if it holds no result of ours."""
    try:
        doc = json.loads((Path(path) / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION or not isinstance(doc.get("kind"), str):
        return None
    return doc["kind"]


def output_problem(path: str | os.PathLike, kind: str | None = None) -> str | None:
    """Why a result of ``kind`` (any kind: None) may not be saved at ``path``, or None if it may.

    A result goes where nothing is, into an empty folder, or over an earlier result of the same
    kind (the documented default of every command): never over anything mmneurons did not write."""
    path = Path(path)
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                return f"cannot write {path}: {parent} is a file"
            break
    if not (path.exists() or path.is_symlink()):
        return None
    if path.is_symlink() or not path.is_dir():
        return f"{path} exists and is not a folder: nothing was written; choose another output path"
    if not any(path.iterdir()):
        return None
    found = saved_kind(path)
    if found is not None and (kind is None or found == kind):
        return None
    what = f"a saved {found} result" if found else "a folder that holds no result of mmneurons"
    return (f"{path} exists and is {what}: nothing was written (mmneurons replaces only an earlier result "
            f"of the same kind); choose another output path")


def check_output(path: str | os.PathLike, kind: str | None = None) -> None:
    """Raise :class:`~mmneurons.errors.OutputError` where :func:`output_problem` finds one."""
    problem = output_problem(path, kind)
    if problem:
        raise OutputError(problem)


def save_result(result: Result, path: str | os.PathLike) -> Path:
    """Write ``result`` to the folder ``path`` atomically; return the path.

    Refuses (:class:`~mmneurons.errors.OutputError`) to replace anything but an earlier result of
    the same kind (see :func:`output_problem`)."""
    if not dataclasses.is_dataclass(result):
        raise TypeError(f"can only save dataclass results, got {type(result).__name__}")
    path = Path(path)
    check_output(path, result.kind)
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
        if path.exists() and not any(path.iterdir()):
            path.rmdir()  # an empty folder: nothing in it to lose
        if path.exists():  # an earlier result of ours (checked above): set aside under a fresh name
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            path.rename(old / path.name)
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


def load_result(path: str | os.PathLike, extra_types: tuple[type, ...] = ()) -> Result:
    """Rebuild a result saved with :func:`save_result`.

    The type named in ``result.json`` is looked up among :func:`known_result_types` (plus
    ``extra_types``), never imported: a result folder is data, and reading one runs no code."""
    folder = Path(path)
    meta = folder / "result.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{folder} is not a saved result (no result.json)")
    doc = json.loads(meta.read_text())
    if doc.get("format") != FORMAT_VERSION:
        raise ValueError(f"{folder}: unsupported result format {doc.get('format')!r}")
    known = known_result_types(tuple(extra_types))
    cls = _known_type(doc.get("type"), known, folder)
    arrays = {}
    if (folder / "arrays.npz").exists():
        with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    return cls(**{k: _decode(v, arrays, folder, known) for k, v in doc["fields"].items()})


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
    ``snapshots`` are the images at ``thresholds`` (optimization steps). ``target`` labels the
    image; where a visualizer renders several images of one target (``diversity``: ``unit#j``),
    ``of`` is the target as asked for and ``sample`` the image's index among them.
    """

    kind = "feature_vis"

    model_id: str = ""
    method: str = ""
    target: str = ""
    of: str = ""
    sample: int | None = None
    image: Image.Image | None = None
    snapshots: list = field(default_factory=list)
    thresholds: list[int] = field(default_factory=list)
    activation: float = 0.0
    activation_gray: float = 0.0
    activation_noise: float = 0.0
    loss_curve: np.ndarray | None = None
    params: dict = field(default_factory=dict)


#: the column that names a table row's unit (``layer4.0:17``) in a probe's tables
UNIT_COLUMN = "unit"


@dataclass
class ProbeResult(Result):
    """What a probe found: named tables (lists of row dicts), arrays, images with captions and a
    summary. One shape for every probe, so the CLI and the app can show any of them.

    A table with one row per unit names it in the column :data:`UNIT_COLUMN` (``"unit"``, as
    ``layer4.0:17``): the app merges such tables of several probes into one units table.
    """

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


@dataclass
class TopKActivations(Result):
    """The k images that most (and least) activate each channel of a layer."""

    kind = "topk_activations"

    model_id: str = ""
    layer: str = ""
    reduce: str = "mean"
    k: int = 0
    top_values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    top_indices: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    bottom_values: np.ndarray | None = None
    bottom_indices: np.ndarray | None = None
    image_ids: list[str] = field(default_factory=list)
    categories: list = field(default_factory=list)
    n_images: int = 0
    skipped: list[list[str]] = field(default_factory=list)
    precision: str = "fp32"  # what the model computed in (the scan's resolved precision)

    def top(self, channel: int) -> list[tuple[str, float]]:
        """(image id, activation) of the top images of ``channel``, best first."""
        return [(self.image_ids[i], float(v)) for i, v in zip(self.top_indices[channel], self.top_values[channel])]


@dataclass
class UnitContributions(Result):
    """Units of a layer ranked by how much of a target's logit they carry (layer Integrated Gradients)."""

    kind = "unit_contributions"

    model_id: str = ""
    layer: str = ""
    target: str = ""
    channels: np.ndarray | None = None       # ranked channel indices
    contributions: np.ndarray | None = None  # their summed attributions, same order
    total: float = 0.0                       # sum over all channels (about f(x) - f(baseline))
    target_minus_baseline: float = 0.0
    images: int = 0

    def table(self, top: int | None = None) -> list[dict]:
        """The ranked units as rows (all of them, or the first ``top``)."""
        return [{"unit": f"{self.layer}:{int(c)}", "contribution": float(v)}
                for c, v in zip(self.channels[:top], self.contributions[:top])]

    @property
    def summary(self) -> dict:
        """What a probe result's summary holds: the target, the layer and how well the units add up."""
        return {"target": self.target, "layer": self.layer, "images": self.images, "total": self.total,
                "target_minus_baseline": self.target_minus_baseline}

    @property
    def tables(self) -> dict[str, list[dict]]:
        """The ranking as a probe result's table, so every front end shows it like any probe's."""
        return {"units": self.table()}


#: result types that lived elsewhere before: results saved then still load
_MOVED = {"mmneurons.activations:TopKActivations": TopKActivations,
          "mmneurons.plugins.captum_attr:UnitContributions": UnitContributions}
#: every result type the core defines (``load_result`` reads them without a plugin declaring them)
CORE_RESULT_TYPES = (AttributionMap, FeatureVis, ProbeResult, TopKActivations, UnitContributions)
