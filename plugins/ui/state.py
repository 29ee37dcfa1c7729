"""What the app shares between script runs and browser sessions.

Models are loaded once per (id, device) with ``st.cache_resource`` and shared by all sessions; any
forward or backward work on them runs under ``ClipModel.lock`` (the plugins take it), so two
sessions never interleave hooks on one model. Results live in one :class:`ResultCache`. Which
model, layer and unit a page shows is kept in the URL (``st.query_params``) so a view is a link.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import streamlit as st

from mmneurons.access import check_model
from mmneurons.models import ClipModel, load_model
from mmneurons.registry import PluginRegistry, get_registry

from .cache import ResultCache, ResultStore, RunBoard, cache_dir

#: models kept loaded at once (each RN50x4 is about 0.5 GB)
MAX_MODELS = int(os.environ.get("MMNEURONS_APP_MAX_MODELS", "3"))


def registry() -> PluginRegistry:
    """The process-wide plugin registry (the one global the core keeps; tests swap it)."""
    return get_registry()


@st.cache_resource(show_spinner=False, max_entries=MAX_MODELS)
def _load_model(model_id: str, device: str) -> ClipModel:
    return load_model(model_id, device)


def get_model(model_id: str) -> ClipModel | None:
    """The loaded model, or None after showing why it could not be loaded (no traceback: the
    providers' messages say what to do, e.g. the offline one names the cache folder)."""
    device = os.environ.get("MMNEURONS_DEVICE", "auto")
    try:
        check_model(model_id)  # an app served to others loads only the models it offers
        with st.spinner(f"Loading {model_id} ..."):
            return _load_model(model_id, device)
    except Exception as exc:  # noqa: BLE001 - any provider failure is shown, the page goes on
        st.error(f"Could not load model **{model_id}**: {exc}")
        return None


@st.cache_resource(show_spinner=False)
def results() -> ResultCache:
    """The result cache shared by all sessions."""
    return ResultCache(int(os.environ.get("MMNEURONS_APP_MAX_RESULTS", "512")))


@st.cache_resource(show_spinner=False)
def run_board() -> RunBoard:
    """Who runs what on which model, shared by all sessions."""
    return RunBoard()


def run_limit() -> float:
    """Seconds one run may take before it is stopped (``mmneurons app --run-limit``)."""
    try:
        return max(0.1, float(os.environ.get("MMNEURONS_APP_RUN_LIMIT_S", "900")))
    except ValueError:
        return 900.0


def result_store() -> ResultStore:
    """Results the app computes on its own (the first view), kept on disk across starts."""
    return ResultStore(cache_dir() / "app-results")


def remembered(name: str, default: Any, convert: Callable[[str], Any] = str) -> Any:
    """A value shared by all pages of a session: the URL's ``?name=`` first, then what this
    session chose last, then ``default``."""
    shadow = f"mm.{name}"
    if name in st.query_params:
        try:
            return convert(st.query_params[name])
        except (TypeError, ValueError):
            st.warning(f"ignoring ?{name}={st.query_params[name]!r} in the link: not a valid value")
    return st.session_state.get(shadow, default)


def remember(name: str, value: Any) -> None:
    """Keep ``value`` for other pages and put it into the URL."""
    st.session_state[f"mm.{name}"] = value
    if value is None:
        st.query_params.pop(name, None)
    elif st.query_params.get(name) != str(value):
        st.query_params[name] = str(value)

