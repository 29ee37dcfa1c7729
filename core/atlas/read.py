"""Reading an atlas: :class:`Atlas` opens one read-only, so reads never block (or see half of) a
running build."""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import LayerError, UnitError
from . import store
from .store import AtlasError


@dataclass(frozen=True)
class StageInfo:
    """How one stage of one layer was built: its state (``done``, ``partial``, ``skipped``), the
    parameters and code version it ran with, the build that wrote it and when it finished."""

    layer: str
    stage: str
    state: str
    params: dict
    code_version: str
    build: int | None
    finished: float | None
    note: str


@dataclass(frozen=True)
class BuildInfo:
    id: int
    started: float
    finished: float | None
    state: str            # running, done, failed, interrupted, or killed (found running by the next build)
    config: dict
    pid: int | None
    error: str | None


@dataclass(frozen=True)
class AtlasUnit:
    """One unit's stored values: ``values[stage]`` as the stage wrote it (missing: not built yet)."""

    layer: str
    channel: int
    values: dict[str, Any]
    stages: dict[str, StageInfo] = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.layer}:{self.channel}"


@dataclass(frozen=True)
class SearchHit:
    unit: str
    stage: str
    text: str


def flatten(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """``("stage.key.sub", scalar)`` pairs of a stored value; lists (examples, profiles) are left to
    :meth:`Atlas.unit`."""
    if isinstance(value, dict):
        for key in sorted(value):
            yield from flatten(value[key], f"{prefix}.{key}")
    elif value is None or isinstance(value, (str, int, float, bool)):
        yield prefix, value


class AtlasLayer:
    """One layer of an atlas: its shape and the table of all its units."""

    def __init__(self, atlas: "Atlas", name: str, channels: int, height: int, width: int) -> None:
        self.atlas, self.name, self.channels, self.height, self.width = atlas, name, channels, height, width

    def __repr__(self) -> str:
        return f"AtlasLayer({self.name!r}, channels={self.channels})"

    def table(self) -> list[dict[str, Any]]:
        """One row per unit: ``unit``, ``channel`` and every stored scalar as ``"stage.key"`` (nested
        keys joined by dots); a value a unit lacks is None."""
        rows: dict[int, dict[str, Any]] = {c: {"unit": f"{self.name}:{c}", "channel": c} for c in range(self.channels)}
        columns: dict[str, None] = {}
        for channel, stage, data in self.atlas._query(
                "SELECT channel, stage, data FROM unit_values WHERE layer = ? ORDER BY stage, channel", (self.name,)):
            for key, value in flatten(json.loads(data), stage):
                columns.setdefault(key)
                rows[channel][key] = value
        return [{"unit": row["unit"], "channel": row["channel"], **dict.fromkeys(columns), **row}
                for row in rows.values()]

    def records(self) -> np.recarray:
        """:meth:`table` as a numpy record array: numbers as float (None as NaN), flags as bool,
        words as str."""
        table = self.table()
        if not table:
            return np.rec.fromrecords([], names="unit")
        names = list(table[0])
        arrays = []
        for name in names:
            column = [row[name] for row in table]
            present = [v for v in column if v is not None]
            if present and all(isinstance(v, bool) for v in present):
                arrays.append(np.array([bool(v) for v in column]))
            elif present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
                arrays.append(np.array([np.nan if v is None else float(v) for v in column]))
            else:
                arrays.append(np.array(["" if v is None else str(v) for v in column]))
        return np.rec.fromarrays(arrays, names=names)

    def stages(self) -> dict[str, StageInfo]:
        return self.atlas.stages(self.name)


class Atlas:
    """An atlas folder opened for reading::

        atlas = Atlas.open("my-atlas")
        atlas.unit("layer4.0:17").values["neuron_label"]
        atlas.layer("layer4.0").records()
    """

    def __init__(self, folder: Path, conn: sqlite3.Connection) -> None:
        self.folder, self._conn = folder, conn

    @classmethod
    def open(cls, path: "str | Path") -> "Atlas":
        folder = Path(path)
        if folder.name == store.DB_NAME:
            folder = folder.parent
        return cls(folder, store.connect(folder, write=False))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Atlas":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Atlas({str(self.folder)!r})"

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise AtlasError(f"{self.folder}: cannot read the atlas ({exc})") from None

    # -- what it holds -------------------------------------------------------------------------
    @property
    def identity(self) -> dict[str, str]:
        """The model id, its weights' sha256 and the image source the atlas was built from."""
        row = self._query("SELECT value FROM meta WHERE key = 'identity'")
        return json.loads(row[0][0]) if row else {}

    @property
    def model_id(self) -> str:
        return self.identity.get("model_id", "")

    def layers(self) -> list[AtlasLayer]:
        return [AtlasLayer(self, *row) for row in
                self._query("SELECT name, channels, height, width FROM layers ORDER BY name")]

    def layer(self, name: str) -> AtlasLayer:
        for layer in self.layers():
            if layer.name == name:
                return layer
        held = ", ".join(layer.name for layer in self.layers()) or "none"
        raise LayerError(f"the atlas {self.folder} holds no layer {name!r} (it holds: {held})")

    def has(self, layer: str) -> bool:
        return bool(self._query("SELECT 1 FROM layers WHERE name = ?", (layer,)))

    def stages(self, layer: str | None = None) -> dict[str, StageInfo]:
        """``{stage: StageInfo}`` of one layer (or ``{"layer/stage": ...}`` of all)."""
        rows = self._query("SELECT layer, stage, state, params, code_version, build, finished, note FROM stages "
                           "ORDER BY layer, stage")
        infos = [StageInfo(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7] or "") for r in rows]
        if layer is not None:
            return {i.stage: i for i in infos if i.layer == layer}
        return {f"{i.layer}/{i.stage}": i for i in infos}

    def builds(self) -> list[BuildInfo]:
        return [BuildInfo(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in
                self._query("SELECT id, started, finished, state, config, pid, error FROM builds ORDER BY id")]

    def counts(self, layer: str) -> dict[str, int]:
        """Units stored per stage of ``layer``."""
        return dict(self._query("SELECT stage, COUNT(*) FROM unit_values WHERE layer = ? GROUP BY stage", (layer,)))

    # -- units ---------------------------------------------------------------------------------
    def unit(self, name: str) -> AtlasUnit:
        """``"layer4.0:17"`` -> that unit's stored values."""
        layer_name, sep, channel = name.rpartition(":")
        if not sep or not channel.isdigit():
            raise UnitError(f"{name!r} is not a unit; write LAYER:CHANNEL, e.g. layer4.0:17")
        layer = self.layer(layer_name)
        c = int(channel)
        if c >= layer.channels:
            raise UnitError(f"{name}: {layer_name} has {layer.channels} channels (0..{layer.channels - 1})")
        values = {stage: json.loads(data) for stage, data in self._query(
            "SELECT stage, data FROM unit_values WHERE layer = ? AND channel = ? ORDER BY stage", (layer_name, c))}
        return AtlasUnit(layer_name, c, values, self.stages(layer_name))

    def file(self, digest: str) -> Path:
        """The path of a stored file (a PNG or NPZ that a value names by its hash)."""
        row = self._query("SELECT suffix FROM files WHERE hash = ?", (digest,))
        if not row:
            raise AtlasError(f"{self.folder}: no stored file {digest[:12]}...")
        return store.file_path(self.folder, digest, row[0][0])

    def unreferenced_files(self) -> list[tuple[str, str, int]]:
        """Stored files no unit names any more (``mmneurons atlas gc`` removes them): (hash, suffix, bytes)."""
        try:
            return store.unreferenced_files(self._conn)
        except sqlite3.DatabaseError as exc:
            raise AtlasError(f"{self.folder}: cannot read the atlas ({exc})") from None

    def maps(self, unit: str) -> np.ndarray:
        """The activation maps of a unit's top images, ``[k, height, width]``."""
        digest = self.unit(unit).values.get("examples", {}).get("maps")
        if not digest:
            raise AtlasError(f"{unit}: the atlas holds no examples for it yet")
        with np.load(self.file(digest)) as data:
            return data["maps"].astype(np.float32)

    def search(self, text: str, *, layer: str | None = None, limit: int = 50) -> list[SearchHit]:
        """Units whose labels, top words or other stored words match ``text`` (each word, as a prefix),
        best first."""
        words = re.findall(r"\w+", text)
        if not words:
            return []
        query = " ".join(f'"{w}"*' for w in words)
        sql = "SELECT layer, channel, stage, text FROM unit_text WHERE unit_text MATCH ?"
        args: tuple = (query,)
        if layer is not None:
            sql += " AND layer = ?"
            args += (layer,)
        rows = self._query(sql + " ORDER BY bm25(unit_text) LIMIT ?", args + (limit,))
        return [SearchHit(f"{r[0]}:{r[1]}", r[2], r[3]) for r in rows]


__all__ = ["Atlas", "AtlasError", "AtlasLayer", "AtlasUnit", "BuildInfo", "SearchHit", "StageInfo"]
