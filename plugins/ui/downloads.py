"""Every result as files a user can take away: JSON (fields and small arrays), CSV (each table),
PNG (each image, zipped when there are several) and the whole result folder (zipped; it loads
back with ``mmneurons.results.load_result``). Generic over result dataclasses, no Streamlit."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from mmneurons.results import image_to_png_bytes, save_result

#: arrays up to this many values go into the JSON download; larger ones only into the folder zip
JSON_ARRAY_LIMIT = 100_000


@dataclass(frozen=True)
class Download:
    """One download button: what it says, the file name, the MIME type and how to make the bytes
    (called only when the user clicks, so unused downloads cost nothing)."""

    label: str
    filename: str
    mime: str
    data: Callable[[], bytes]


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "result"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Image.Image):
        return {"image": f"{value.width}x{value.height} {value.mode} (PNG download)"}
    if isinstance(value, np.ndarray) or type(value).__module__ == "torch":
        arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
        if arr.size <= JSON_ARRAY_LIMIT:
            return arr.tolist()
        return {"shape": list(arr.shape), "note": "too large for JSON: in the result folder (zip)"}
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def result_json(result: Any) -> bytes:
    """The result's fields as JSON (images described, large arrays summarized)."""
    doc = {"kind": getattr(result, "kind", type(result).__name__), **_jsonable(result)}
    return json.dumps(doc, indent=1, allow_nan=True).encode()


def result_tables(result: Any) -> dict[str, list[dict]]:
    """Named tables of a result (its ``tables``: every probe result, unit contributions included)."""
    tables = getattr(result, "tables", None)
    if isinstance(tables, dict):
        return {name: rows for name, rows in tables.items() if isinstance(rows, list)}
    return {}


def table_csv(rows: list[dict]) -> bytes:
    """Rows as CSV; columns are the union of the keys in first-seen order; lists and dicts as JSON."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(_jsonable(v)) if isinstance(v, (list, dict, tuple)) else _jsonable(v)
                         for k, v in row.items()})
    return buf.getvalue().encode()


def result_images(result: Any) -> list[tuple[str, Image.Image]]:
    """(name, image) for every image in the result's fields, lists included."""
    found: list[tuple[str, Image.Image]] = []
    if not dataclasses.is_dataclass(result):
        return found
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, Image.Image):
            found.append((f.name, value))
        elif isinstance(value, (list, tuple)):
            found += [(f"{f.name}-{i:02d}", v) for i, v in enumerate(value) if isinstance(v, Image.Image)]
    return found


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def result_folder_zip(result: Any, name: str) -> bytes:
    """The result saved as a folder (``save_result``) and zipped under ``name/``."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_result(result, Path(tmp) / name)
        return _zip({f"{name}/{p.relative_to(folder)}": p.read_bytes()
                     for p in sorted(folder.rglob("*")) if p.is_file()})


def downloads_for(result: Any, stem: str) -> list[Download]:
    """The downloads of one result, named after ``stem``."""
    stem = slug(stem)
    out = [Download("JSON", f"{stem}.json", "application/json", lambda: result_json(result))]
    for name, rows in result_tables(result).items():
        out.append(Download(f"CSV: {name}", f"{stem}-{slug(name)}.csv", "text/csv",
                            lambda rows=rows: table_csv(rows)))
    images = result_images(result)
    if len(images) == 1:
        out.append(Download("PNG", f"{stem}.png", "image/png", lambda: image_to_png_bytes(images[0][1])))
    elif images:
        out.append(Download(f"PNG ({len(images)} images, zip)", f"{stem}-images.zip", "application/zip",
                            lambda: _zip({f"{slug(n)}.png": image_to_png_bytes(im) for n, im in images})))
    if dataclasses.is_dataclass(result):
        out.append(Download("result folder (zip)", f"{stem}.zip", "application/zip",
                            lambda: result_folder_zip(result, stem)))
    return out
