"""The path check of a render on the Neuron page: the render against the unit's top images in the
chosen source (:func:`mmneurons.analysis.render_check.check_against_source`), on a click, cached."""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import streamlit as st

from mmneurons.analysis.render_check import PATH_HELP, check_against_source
from mmneurons.models import ClipModel

from . import state
from .format import fmt


def path_check_panel(model: ClipModel, unit: str, renders: Sequence[Any], source: Any, source_key: str | None,
                     *, key: str) -> None:
    images = [r.image for r in renders if getattr(r, "image", None) is not None]
    if not images:
        return
    if source is None:
        st.caption("Path check: choose an image source in the sidebar to compare this render's path through "
                   "the network with the unit's top images there.")
        return
    digest = hashlib.sha256(b"".join(image.tobytes() for image in images)).hexdigest()
    cache_key = ("path_check", model.model_id, unit, source_key, digest)
    cache = state.results()
    scores = cache.get(cache_key)
    if scores is None and st.button("Check the render's path", key=f"{key}.path",
                                    help="Does the network process this render like the unit's top images?"):
        try:
            with st.spinner("scanning the source for the unit's top images ..."):
                scores = check_against_source(model, unit, images, source)
        except ValueError as exc:
            st.error(str(exc))
            return
        cache.put(cache_key, scores)
    for i, score in enumerate(scores or []):
        name = f"render {i + 1}: " if len(images) > 1 else ""
        layers = ", ".join(f"{k} {fmt(v)}" for k, v in score.per_layer.items())
        st.caption(f"{name}path check {fmt(score.score)} ({layers}): {PATH_HELP}")
        if score.warning:
            st.warning(score.warning)
