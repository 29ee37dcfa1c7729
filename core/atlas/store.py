"""The atlas on disk: one SQLite database (WAL) and content-addressed files beside it.

An atlas is a folder::

    atlas.sqlite        model, layers, units, per-unit values of each stage, builds, search index
    files/ab/<sha256>   PNG and NPZ files, named by their content (written before the rows that name them)
    build.lock          held (flock) by the one build that may write

Readers open the database read-only; in WAL mode they never block a running build and never see
half of one of its transactions. The schema is versioned (``PRAGMA user_version``) and upgraded by
the migrations below when a build opens an older atlas.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from ..errors import OutputError

DB_NAME = "atlas.sqlite"
FILES = "files"
LOCK = "build.lock"

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE layers (name TEXT PRIMARY KEY, channels INTEGER NOT NULL, height INTEGER NOT NULL,
                     width INTEGER NOT NULL);
CREATE TABLE builds (id INTEGER PRIMARY KEY, started REAL NOT NULL, finished REAL, state TEXT NOT NULL,
                     config TEXT NOT NULL, pid INTEGER, error TEXT);
CREATE TABLE stages (layer TEXT NOT NULL, stage TEXT NOT NULL, state TEXT NOT NULL, params TEXT NOT NULL,
                     code_version TEXT NOT NULL, build INTEGER, finished REAL, note TEXT,
                     PRIMARY KEY (layer, stage));
CREATE TABLE unit_values (layer TEXT NOT NULL, channel INTEGER NOT NULL, stage TEXT NOT NULL,
                          data TEXT NOT NULL, PRIMARY KEY (layer, channel, stage));
CREATE TABLE files (hash TEXT PRIMARY KEY, suffix TEXT NOT NULL, bytes INTEGER NOT NULL)
"""


def _v1(conn: sqlite3.Connection) -> None:
    """Model, layers, each stage's per-unit values, files, builds."""
    for statement in _statements(_V1):
        conn.execute(statement)


def _v2(conn: sqlite3.Connection) -> None:
    """Full-text search over the words of each unit's probe values (labels, top words), filled for
    the values already stored."""
    conn.execute("CREATE VIRTUAL TABLE unit_text USING fts5(layer UNINDEXED, channel UNINDEXED, stage UNINDEXED, "
                 "text)")
    rows = conn.execute("SELECT layer, channel, stage, data FROM unit_values "
                        "WHERE stage NOT IN ('examples', 'vis')").fetchall()
    conn.executemany("INSERT INTO unit_text (layer, channel, stage, text) VALUES (?, ?, ?, ?)",
                     [(layer, channel, stage, search_text(json.loads(data))) for layer, channel, stage, data in rows])


def search_text(value: Any) -> str:
    """The words of a stored value that search should find: its strings, not keys, numbers, hashes or
    lists (a list is data, like a profile's concept names, not what the unit is about)."""
    if isinstance(value, str):
        return "" if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else value
    if isinstance(value, dict):
        return " ".join(filter(None, (search_text(v) for v in value.values())))
    return ""


#: each migration takes the schema from version i to i + 1 (never edit one that has shipped: add one)
MIGRATIONS = (_v1, _v2)
SCHEMA_VERSION = len(MIGRATIONS)


class AtlasError(ValueError):
    """An atlas that cannot be used as asked: the message says why and what to do."""


def connect(folder: Path, *, write: bool, check_version: bool = True) -> sqlite3.Connection:
    """A connection to the atlas in ``folder``: read-only for readers (the database must exist, at
    this version's schema unless ``check_version`` is off), and for the build a writer in WAL mode
    with the schema upgraded."""
    path = folder / DB_NAME
    if not write:
        if not path.is_file():
            raise AtlasError(f"{folder} is not an atlas (no {DB_NAME}); build one with `mmneurons atlas build`")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if not check_version:
            return conn
        if version > SCHEMA_VERSION:
            raise AtlasError(f"{folder} was written by a newer mmneurons (schema {version}, this one reads up to "
                             f"{SCHEMA_VERSION}); upgrade mmneurons")
        if version < SCHEMA_VERSION:
            raise AtlasError(f"{folder} has schema {version}; run `mmneurons atlas upgrade {folder}` (or any build "
                             f"of it) to bring it to {SCHEMA_VERSION}")
        return conn
    folder.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations the database lacks, each in one transaction; returns the new version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise AtlasError(f"the atlas was written by a newer mmneurons (schema {version}); upgrade mmneurons")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with transaction(conn):
            MIGRATIONS[target - 1](conn)
            conn.execute(f"PRAGMA user_version = {target}")
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


class transaction:
    """``with transaction(conn):`` one write transaction (BEGIN IMMEDIATE ... COMMIT, or ROLLBACK)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind, exc, tb) -> None:
        self.conn.execute("ROLLBACK" if kind else "COMMIT")


def file_path(folder: Path, digest: str, suffix: str) -> Path:
    return folder / FILES / digest[:2] / f"{digest}{suffix}"


def put_file(folder: Path, data: bytes, suffix: str) -> str:
    """Store ``data`` under its sha256 (written to a temporary file, then renamed: never half a
    file); returns the hash. Storing the same bytes twice is a no-op."""
    digest = hashlib.sha256(data).hexdigest()
    path = file_path(folder, digest, suffix)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    return digest


def remove_partial_files(folder: Path) -> int:
    """Remove the temporary files a killed build left in ``files/`` (only ours: ``.tmp-*``)."""
    removed = 0
    for path in (folder / FILES).glob("*/.tmp-*"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _hashes(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _hashes(v)
    elif isinstance(value, list):
        for v in value:
            yield from _hashes(v)


def unreferenced_files(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    """The stored files no unit value names any more (left by stages built again): (hash, suffix, bytes)."""
    named = {h for (data,) in conn.execute("SELECT data FROM unit_values") for h in _hashes(json.loads(data))}
    return [row for row in conn.execute("SELECT hash, suffix, bytes FROM files") if row[0] not in named]


def remove_unreferenced_files(folder: Path, conn: sqlite3.Connection) -> tuple[int, int]:
    """Delete the files no value names (ours: recorded in ``files``), their rows first; (count, bytes)."""
    unused = unreferenced_files(conn)
    with transaction(conn):
        conn.executemany("DELETE FROM files WHERE hash = ?", [(h,) for h, _, _ in unused])
    for digest, suffix, _ in unused:
        file_path(folder, digest, suffix).unlink(missing_ok=True)
    return len(unused), sum(size for _, _, size in unused)


def record_files(conn: sqlite3.Connection, files: Iterable[tuple[str, str, int]]) -> None:
    conn.executemany("INSERT OR IGNORE INTO files (hash, suffix, bytes) VALUES (?, ?, ?)", list(files))


def dumps(value: Any) -> str:
    """JSON with sorted keys and no NaN (null instead), so equal values are equal text."""
    return json.dumps(_finite(value), sort_keys=True, allow_nan=False, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def check_folder(folder: Path) -> None:
    """An atlas folder is ours or empty: a build never writes into a folder of other files."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file; --atlas names a folder (created if missing)")
    if folder.is_dir() and not (folder / DB_NAME).exists() and any(folder.iterdir()):
        raise OutputError(f"{folder} holds other files and no atlas; give an empty or new folder")


def now() -> float:
    return time.time()
