"""What a visitor of an app served beyond this machine may make the server read or load.

``mmneurons app --host ADDR`` (an address other than loopback), or ``--data`` / ``--allow-model``,
sets these for the server process:

    MMNEURONS_DATA_ROOTS   folders (``os.pathsep``-separated) under which files may be read; empty: none
    MMNEURONS_MODELS       model ids (comma-separated) that may be loaded

The loaders that read a file a user names (image folders, word lists, ``@FILE`` lists) call
:func:`check_readable`, and the app calls :func:`check_model`. Unset, as for the command line and
an app on loopback, everything is allowed. Plugins that open files a user names should call
:func:`check_readable` too.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import AccessError

__all__ = ["DATA_ROOTS_ENV", "MODELS_ENV", "data_roots", "allowed_models", "check_readable", "check_model",
           "is_loopback"]

DATA_ROOTS_ENV = "MMNEURONS_DATA_ROOTS"
MODELS_ENV = "MMNEURONS_MODELS"


def data_roots() -> list[Path] | None:
    """The folders files may be read under (resolved), or None when every file may be read."""
    value = os.environ.get(DATA_ROOTS_ENV)
    if value is None:
        return None
    return [Path(p).resolve() for p in value.split(os.pathsep) if p.strip()]


def allowed_models() -> list[str] | None:
    """The model ids that may be loaded, or None when any may."""
    value = os.environ.get(MODELS_ENV)
    if value is None:
        return None
    return [m.strip() for m in value.split(",") if m.strip()]


def check_readable(path: str | os.PathLike) -> Path:
    """``path`` if it may be read: inside a data root once ``..`` and symlinks are resolved."""
    roots = data_roots()
    if roots is None:
        return Path(path)
    real = Path(path).resolve()
    if any(real == root or real.is_relative_to(root) for root in roots):
        return Path(path)
    where = ", ".join(str(r) for r in roots) or "none: this app was started without --data"
    raise AccessError(f"{path} is outside the folders this app may read ({where})")


def check_model(model_id: str) -> str:
    """``model_id`` if it may be loaded here."""
    allowed = allowed_models()
    if allowed is None or model_id in allowed:
        return model_id
    raise AccessError(f"model {model_id!r} is not offered by this app; models: {', '.join(allowed) or 'none'}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` serves this machine only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
