"""Image sources for the formats web-scale image datasets come in: WebDataset tar shards and
parquet files (what ``img2dataset`` writes when it downloads a LAION or CC subset).

Both index their records once (tar headers; parquet metadata and the small columns) and read an
image's bytes only when it is loaded, so any process, a DataLoader worker or a Ray task, loads any
record by position. Bad records follow the folder rules: a record whose image is missing, corrupt
or truncated raises :class:`ImageLoadError` when loaded, so a scan skips it, counts it and names
it; a shard that ends mid-record is read up to the break, and the break is in :attr:`problems`.
"""

from __future__ import annotations

import glob
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from .access import check_readable
from .errors import ImageLoadError
from .images import ImageRecord, decode_image

__all__ = ["WebDatasetSource", "ParquetSource", "expand_paths", "IMAGE_EXTENSIONS"]

#: member extensions of a WebDataset sample read as its image, in order of preference
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm")
#: shard files a process keeps open at once (loads come in order, so one is usually enough)
_OPEN_SHARDS = 8
#: extensions / columns read as an image's category (labels first, then captions)
_LABEL_KEYS = ("cls", "label", "category", "class")
_CAPTION_KEYS = ("txt", "caption", "text")


def _expand_braces(pattern: str) -> list[str]:
    """``shards/{00000..00009}.tar`` -> the ten names (WebDataset's brace ranges; zero padding kept)."""
    match = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if not match:
        return [pattern]
    first, last = match.group(1), match.group(2)
    width = len(first) if first.startswith("0") else 0
    names = [pattern[:match.start()] + str(n).zfill(width) + pattern[match.end():]
             for n in range(int(first), int(last) + 1)]
    return [expanded for name in names for expanded in _expand_braces(name)]


def expand_paths(spec: str | os.PathLike | Sequence[str | os.PathLike], suffix: str, what: str) -> list[Path]:
    """Files named by ``spec``: a file, a folder (its ``*suffix`` files), a glob or a brace range,
    or a list of those; sorted, each checked readable; an error when none exists."""
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    files: list[Path] = []
    for item in specs:
        for pattern in _expand_braces(str(item)):
            path = Path(pattern)
            if path.is_dir():
                files += sorted(p for p in path.iterdir() if p.name.endswith(suffix) and not p.name.startswith("."))
            elif any(ch in pattern for ch in "*?["):
                files += sorted(Path(p) for p in glob.glob(pattern) if p.endswith(suffix))
            elif path.exists():
                files.append(path)
            else:
                raise ImageLoadError(f"{what} {pattern} does not exist")
    files = [check_readable(f) for f in dict.fromkeys(files)]
    if not files:
        raise ImageLoadError(f"no {what} (*{suffix}) found at {spec}")
    return files


# -- WebDataset ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Member:
    shard: int
    offset: int
    size: int
    name: str


def _split_key(name: str) -> tuple[str, str]:
    """``dir/sample.001.jpg`` -> (``dir/sample``, ``001.jpg``): WebDataset's key is the name up to
    the first dot of the last path component."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext if dot else ""


class WebDatasetSource:
    """Samples of WebDataset tar shards: members sharing a key form a sample; its image is the
    first member with an image extension, its category the ``cls`` (or json ``label``) when
    present, else the caption (``txt``); the caption and the json fields are in the record's
    ``meta``. Ids are ``SHARD/KEY``."""

    def __init__(self, shards: str | os.PathLike | Sequence[str | os.PathLike], *, category: str = "auto") -> None:
        self.shards = expand_paths(shards, ".tar", "WebDataset shard")
        self.category = category
        self.problems: list[str] = []
        self.samples: list[dict[str, Any]] = []
        for number, shard in enumerate(self.shards):
            self._index(number, shard)
        if not self.samples:
            raise ImageLoadError(f"WebDataset shards {self._where()} hold no samples"
                                 + (f" ({self.problems[0]})" if self.problems else ""))
        self._handles: dict[int, Any] = {}

    def _where(self) -> str:
        return str(self.shards[0]) if len(self.shards) == 1 else f"{self.shards[0].parent} ({len(self.shards)} shards)"

    def _index(self, number: int, shard: Path) -> None:
        samples: dict[str, dict[str, Any]] = {}
        size = shard.stat().st_size
        try:
            with tarfile.open(shard, "r:") as tar:
                for info in tar:
                    if not info.isfile():
                        continue
                    key, ext = _split_key(info.name)
                    sample = samples.setdefault(key, {"key": key, "members": {}})
                    sample["members"][ext.lower()] = _Member(number, info.offset_data, info.size, info.name)
        except (tarfile.TarError, OSError, EOFError) as exc:
            self.problems.append(f"{shard.name}: unreadable after {len(samples)} samples "
                                 f"({type(exc).__name__}: {exc})")
        for sample in samples.values():
            members = sample["members"]
            sample["image"] = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
            if sample["image"] is not None and sample["image"].offset + sample["image"].size > size:
                sample["truncated"] = True  # the shard ends inside this image
            sample["meta"] = self._small_fields(shard, members)
            self.samples.append({**sample, "shard": number})

    def _small_fields(self, shard: Path, members: dict[str, _Member]) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        wanted = [e for e in (*_LABEL_KEYS, *_CAPTION_KEYS, "json") if e in members and members[e].size < 1 << 20]
        if not wanted:
            return meta
        with open(shard, "rb") as fh:
            for ext in wanted:
                member = members[ext]
                fh.seek(member.offset)
                text = fh.read(member.size).decode("utf-8", errors="replace").strip()
                if ext == "json":
                    try:
                        fields = json.loads(text)
                    except ValueError:
                        continue
                    if isinstance(fields, dict):
                        meta.update({k: v for k, v in fields.items() if isinstance(v, (str, int, float, bool))})
                else:
                    meta[ext] = text
        return meta

    def __len__(self) -> int:
        return len(self.samples)

    def __getstate__(self) -> dict:  # open files stay in the process that opened them
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def record(self, index: int) -> ImageRecord:
        sample = self.samples[index]
        return ImageRecord(f"{self.shards[sample['shard']].name}/{sample['key']}",
                           _category(sample["meta"], self.category), dict(sample["meta"]))

    def load(self, index: int) -> Image.Image:
        sample = self.samples[index]
        name = self.record(index).id
        member = sample["image"]
        if member is None:
            raise ImageLoadError(f"{name}: no image in this sample (members: {', '.join(sorted(sample['members']))})")
        if sample.get("truncated"):
            raise ImageLoadError(f"{name}: truncated (the shard ends inside the image)")
        handle = self._handles.get(member.shard)
        if handle is None:
            if len(self._handles) >= _OPEN_SHARDS:  # thousands of shards must not mean thousands of open files
                for other in self._handles.values():
                    other.close()
                self._handles.clear()
            handle = self._handles[member.shard] = open(self.shards[member.shard], "rb")
        handle.seek(member.offset)
        return decode_image(handle.read(member.size), name)

    def describe(self) -> str:
        return f"WebDataset {self._where()} ({len(self)} samples)"


def _category(meta: dict[str, Any], which: str) -> str | None:
    keys = (_LABEL_KEYS + _CAPTION_KEYS) if which == "auto" else (which,) if which != "none" else ()
    for key in keys:
        value = meta.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


# -- parquet ---------------------------------------------------------------------------------------
_IMAGE_COLUMNS = ("jpg", "jpeg", "png", "webp", "image", "img", "bytes", "image_bytes")
_PATH_COLUMNS = ("path", "image_path", "file", "filename", "filepath")


class ParquetSource:
    """Rows of parquet files with image bytes (img2dataset's ``jpg`` column, a Hugging Face
    ``image`` struct of ``bytes``/``path``) or local image paths (relative to the file). The
    category is the label column (``label``/``cls``/``category``) when present, else the caption
    (``caption``/``text``); rows img2dataset marks as failed (``status`` not ``success``) are
    records that do not load, with its ``error_message``. Ids are ``FILE:ROW`` (or the ``key``
    column's value)."""

    def __init__(self, files: str | os.PathLike | Sequence[str | os.PathLike], *, image_column: str = "auto",
                 category: str = "auto") -> None:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ImageLoadError("parquet sources need pyarrow (pip install pyarrow)") from None
        self.files = expand_paths(files, ".parquet", "parquet file")
        self.category = category
        self.rows: list[tuple[int, int, int]] = []  # (file, row group, row in group)
        self.records: list[ImageRecord] = []
        self.columns: list[tuple[str, str]] = []    # per file: (column, "bytes" | "struct" | "path")
        self.failed: dict[int, str] = {}
        self.paths: dict[int, str] = {}             # image paths, where the image column holds paths
        for number, path in enumerate(self.files):
            try:
                parquet = pq.ParquetFile(path)
            except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a file that is not parquet
                raise ImageLoadError(f"{path}: not a parquet file ({type(exc).__name__}: {exc})") from None
            self.columns.append(self._image_column(parquet, path, image_column))
            self._index(number, path, parquet)
        if not self.rows:
            raise ImageLoadError(f"parquet files {self._where()} hold no rows")
        self._cache: tuple[tuple[int, int], Any] | None = None

    def _where(self) -> str:
        return str(self.files[0]) if len(self.files) == 1 else f"{self.files[0].parent} ({len(self.files)} files)"

    @staticmethod
    def _image_column(parquet, path: Path, wanted: str) -> tuple[str, str]:
        import pyarrow as pa

        schema = parquet.schema_arrow
        names = list(schema.names)
        candidates = [wanted] if wanted != "auto" else [*_IMAGE_COLUMNS, *_PATH_COLUMNS]
        for name in candidates:
            if name not in names:
                continue
            kind = schema.field(name).type
            if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
                return name, "bytes"
            if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
                return name, "struct"
            if pa.types.is_string(kind) or pa.types.is_large_string(kind):
                return name, "path"
        raise ImageLoadError(f"{path}: no image column (looked for {', '.join(candidates)}; columns: "
                             f"{', '.join(names)}); name it with image_column=")

    def _index(self, number: int, path: Path, parquet) -> None:
        names = set(parquet.schema_arrow.names)
        small = [c for c in ("key", "status", "error_message", *_LABEL_KEYS, *_CAPTION_KEYS, "url") if c in names]
        column, kind = self.columns[number]
        if kind == "path":
            small.append(column)
        in_file = 0
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=small).to_pylist() if small else \
                [{}] * parquet.metadata.row_group(group).num_rows
            for row_in_group, fields in enumerate(table):
                position = len(self.rows)
                self.rows.append((number, group, row_in_group))
                meta = {k: v for k, v in fields.items() if v is not None and k != column}
                name = f"{path.name}:{fields['key'] if fields.get('key') not in (None, '') else in_file}"
                in_file += 1
                if kind == "path":
                    self.paths[position] = fields.get(column) or ""
                self.records.append(ImageRecord(name, _category(meta, self.category), meta))
                status = fields.get("status")
                if status is not None and status != "success":
                    self.failed[position] = f"marked {status}" + (f": {fields['error_message']}"
                                                                  if fields.get("error_message") else "")

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    def record(self, index: int) -> ImageRecord:
        return self.records[index]

    def _group(self, number: int, group: int):
        """The image column of one row group (the last one read is kept: loads come in order)."""
        import pyarrow.parquet as pq

        if self._cache is None or self._cache[0] != (number, group):
            column = self.columns[number][0]
            values = pq.ParquetFile(self.files[number]).read_row_group(group, columns=[column]).column(0)
            self._cache = ((number, group), values)
        return self._cache[1]

    def load(self, index: int) -> Image.Image:
        name = self.records[index].id
        if index in self.failed:
            raise ImageLoadError(f"{name}: {self.failed[index]}")
        number, group, row = self.rows[index]
        column, kind = self.columns[number]
        if kind == "path":
            value = self.paths.get(index)
            if not value:
                raise ImageLoadError(f"{name}: empty {column}")
            from .images import load_image

            path = Path(value)
            return load_image(path if path.is_absolute() else self.files[number].parent / path)
        value = self._group(number, group)[row].as_py()
        if kind == "struct":
            value = (value or {}).get("bytes")
        if not value:
            raise ImageLoadError(f"{name}: no image bytes in column {column}")
        return decode_image(value, name)

    def describe(self) -> str:
        return f"parquet {self._where()} ({len(self)} rows)"
