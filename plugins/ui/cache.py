"""The app's result cache: a bounded, thread-safe mapping shared by every browser session.

Streamlit's ``st.cache_data`` would pickle and hash every call and cannot pass a progress callback
through; results here are immutable once made, so one LRU dict held by ``st.cache_resource``
serves all sessions and keeps no Streamlit out of this module (it is tested without it).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any, Hashable


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
