"""Which model something was made on (a facet, an SAE): the check every such file makes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .models import ClipModel

__all__ = ["other_model"]


def other_model(model: "ClipModel", model_id: str, sha256: str | None) -> str | None:
    """None when ``model`` is the one something was made on (its id, and its weights hash where
    both are known); else "<that id> (weights ...), not on <this id> (weights ...)" for a message."""
    sha = model.meta.get("sha256")
    if model.model_id == model_id and not (sha256 and sha and sha != sha256):
        return None
    theirs = f" (weights {sha256[:12]}...)" if sha256 else ""
    ours = f" (weights {sha[:12]}...)" if sha else ""
    return f"{model_id}{theirs}, not on {model.model_id}{ours}"
