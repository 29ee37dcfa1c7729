"""The atlas: every unit of whole layers (dataset examples, feature visualization, and a column per
atlas probe: top rendered words, label, modality profile), built once and resumably into one folder
(:mod:`~mmneurons.atlas.store`), read at once by the app, the command line and :class:`Atlas`.

Build one with ``mmneurons atlas build`` or :func:`build_atlas`; the stages that run are the core
``examples`` and ``vis`` and every probe that declares ``atlas`` parameters, so a third-party probe
adds a column by declaring them.
"""

from __future__ import annotations

from typing import Any

# Loaded on first use, so the command line's ``atlas`` group (``mmneurons.atlas.commands``) starts
# without numpy or PIL.
_EXPORTS = {"SCHEMA_VERSION": "store", "AtlasError": "store", "BuildOptions": "build", "atlas_probes": "build",
            "build_atlas": "build", "weights_hash": "build", "Atlas": "read", "AtlasLayer": "read",
            "AtlasUnit": "read", "BuildInfo": "read", "SearchHit": "read", "StageInfo": "read"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
