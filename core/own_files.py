"""Writing a file that may replace one of ours and never anything else (facets, SAEs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

__all__ = ["write_own_file"]


def write_own_file(path: "str | os.PathLike", data: bytes, *, kind: str, example: str,
                   is_ours: Callable[[Path], object], error: type[Exception]) -> Path:
    """Write ``data`` to ``path`` atomically (a reader never sees half a file). An existing file is
    replaced only when ``is_ours(path)`` reads it without raising ``error``: a file we did not write
    is left as it is, with an ``error`` that says so. ``kind`` names what we write ("an SAE file");
    ``example`` is a file name to suggest when ``path`` is a folder."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path} is a folder; give a file name such as {path / example}")
    if path.exists():
        try:
            is_ours(path)
        except error:
            raise error(f"{path} exists and is not {kind}; it is left as it is: give another file name") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
