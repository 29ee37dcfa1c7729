"""The app's result caches: a bounded, thread-safe mapping shared by every browser session, and a
store on disk for what the app computes on its own (the first view), so that is computed once per
machine rather than once per start.

Streamlit's ``st.cache_data`` would pickle and hash every call and cannot pass a progress callback
through; results here are immutable once made, so one LRU dict held by ``st.cache_resource``
serves all sessions. No Streamlit in this module (it is tested without it).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Hashable

from mmneurons.results import load_result, save_result


def result_key(model_id: str, kind: str, plugin: str, target: Any, params: dict | None = None,
               source: str | None = None) -> tuple:
    """The identity of a computation: model, plugin kind and name, target, parameters, image source."""
    return (model_id, kind, plugin, str(target), json.dumps(params or {}, sort_keys=True, default=str), source or "")


class ResultCache:
    """Least-recently-used results, at most ``max_items`` of them."""

    def __init__(self, max_items: int = 512) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.max_items = max_items
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def values(self) -> list[Any]:
        with self._lock:
            return list(self._items.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def cache_dir() -> Path:
    """Where mmneurons keeps what it computed for itself: ``MMNEURONS_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/mmneurons`` (``~/.cache/mmneurons``)."""
    if os.environ.get("MMNEURONS_CACHE_DIR"):
        return Path(os.environ["MMNEURONS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmneurons"


class ResultStore:
    """Results on disk under ``folder``, one saved result folder per key (named by the key's hash);
    a list of results is one folder per item. Writes are the atomic saves of
    :func:`~mmneurons.results.save_result`; an entry that cannot be read counts as missing."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def path(self, key: Hashable) -> Path:
        return self.folder / hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:32]

    def get(self, key: Hashable, default: Any = None) -> Any:
        path = self.path(key)
        try:
            if (path / "items.json").is_file():
                count = json.loads((path / "items.json").read_text())["items"]
                return [load_result(path / str(i)) for i in range(count)]
            if (path / "result.json").is_file():
                return load_result(path)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # half-written by an older version, or damaged: compute again
        return default

    def put(self, key: Hashable, value: Any) -> None:
        path = self.path(key)
        if isinstance(value, list):
            for i, item in enumerate(value):
                save_result(item, path / str(i))
            tmp = path / ".items.json.tmp"
            tmp.write_text(json.dumps({"items": len(value)}))
            tmp.replace(path / "items.json")  # the list counts only once every item is written
        else:
            save_result(value, path)


class RunBoard:
    """Which plugin runs on which model, for every session: one app run per model at a time, so a
    visitor who must wait is told for whom and since when, instead of facing a frozen page. (The
    model's own lock, which plugins take, still keeps hooks out of each other's forward passes.)"""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._holders: dict[str, tuple[str, float]] = {}

    def acquire(self, model_id: str, who: str, timeout: float) -> bool:
        """Take ``model_id`` for ``who`` within ``timeout`` seconds; whether it was taken."""
        with self._guard:
            lock = self._locks.setdefault(model_id, threading.Lock())
        if not lock.acquire(timeout=timeout):
            return False
        with self._guard:
            self._holders[model_id] = (who, time.monotonic())
        return True

    def release(self, model_id: str) -> None:
        with self._guard:
            self._holders.pop(model_id, None)
            lock = self._locks.get(model_id)
        if lock is not None and lock.locked():
            lock.release()

    def holder(self, model_id: str) -> tuple[str, float] | None:
        """(who, seconds since it started) of the run on ``model_id`` now, or None."""
        with self._guard:
            held = self._holders.get(model_id)
        return (held[0], time.monotonic() - held[1]) if held else None
