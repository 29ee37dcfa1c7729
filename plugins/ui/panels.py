"""The one way the app runs a plugin: parameter widgets from its ``params``, a cached result when
there is one, otherwise a button, then ``st.status`` with a progress bar fed by the plugin's
progress callback. A plugin that raises (or whose renderer raises) shows an error that names the
plugin and its package, and the rest of the page goes on."""

from __future__ import annotations

import time
import traceback
from typing import Any, Callable, Sequence

import streamlit as st

from mmneurons.kinds import Progress
from mmneurons.models import ClipModel

from . import state
from .cache import ResultStore, result_key
from .downloads import downloads_for
from .widgets import param_widgets, resolved


def who(obj: Any) -> str:
    """``probe 'modality' (plugin 'probes')``: how errors name a plugin object."""
    plugin = getattr(obj, "provided_by", None)
    dist = ""
    if plugin:
        info = next((i for i in state.registry().plugins() if i.name == plugin), None)
        if info is not None and info.distribution:
            dist = f", {info.distribution} {info.version}"
    origin = f" (plugin '{plugin}'{dist})" if plugin else ""
    return f"{getattr(obj, 'kind', 'plugin')} '{getattr(obj, 'name', obj)}'{origin}"


def show_error(obj: Any, exc: BaseException, what: str = "failed") -> None:
    st.error(f"{who(obj)} {what}: {type(exc).__name__}: {exc}")
    with st.expander("traceback"):
        st.code("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), language="text")


def usable(objects: Sequence[Any], model: ClipModel) -> list[Any]:
    """The plugin objects that say they support ``model``; a raising ``supports`` is shown, not fatal."""
    out = []
    for obj in objects:
        try:
            if obj.supports(model):
                out.append(obj)
        except Exception as exc:  # noqa: BLE001
            show_error(obj, exc, "could not say whether it supports this model")
    return out


class RunStopped(Exception):
    """A run stopped by the app: over its time limit."""


def run_with_progress(obj: Any, call: Callable[[Progress], Any], model_id: str | None = None) -> Any | None:
    """``call(progress)`` inside ``st.status`` with a progress bar and a Stop button; None after
    showing an error.

    With ``model_id``, the run first takes that model on the :class:`~.cache.RunBoard` (one run per
    model for all sessions), showing whom it waits for. A run that goes past the time limit
    (``mmneurons app --run-limit``) is stopped at its next progress report; Stop (any click, in
    fact) ends it there too: Streamlit interrupts the script at its next call into Streamlit.
    """
    label = who(obj)
    error: BaseException | None = None
    board, limit = state.run_board(), state.run_limit()
    with st.status(f"Running {label} ...", expanded=True) as status:
        note = st.empty()
        waited = _wait_for_model(board, model_id, label, note) if model_id else 0.0
        try:  # from here on the model is ours: every exit, a rerun raised by any st call included, frees it
            note.empty()
            st.session_state[f"mm.waited.{label}"] = waited  # for the panel's caption after its rerun
            if waited >= 1:
                st.caption(f"waited {waited:.0f} s for another session's run on {model_id}")
            st.button("Stop", key=f"stop.{label}.{model_id}", help="End this run (the page draws again without it)")
            bar = st.progress(0.0, text="starting")
            last = [0.0]
            start = time.perf_counter()

            def progress(done: int, total: int, message: str = "") -> None:
                if time.perf_counter() - start > limit:
                    raise RunStopped(f"stopped after {limit:g} s, the time limit of one run (mmneurons app "
                                     f"--run-limit SECONDS)")
                now = time.monotonic()
                if now - last[0] < 0.1 and done < total:
                    return  # at most ten updates a second reach the browser
                last[0] = now
                fraction = min(1.0, done / total) if total else 0.0
                bar.progress(fraction, text=f"{message} ({done}/{total})" if total else message)

            try:
                result = call(progress)
            except Exception as exc:  # noqa: BLE001 - shown with the plugin's name below
                error = exc
                status.update(label=f"{label} failed", state="error", expanded=False)
            else:
                status.update(label=f"{label}: done in {time.perf_counter() - start:.1f} s", state="complete",
                              expanded=False)
        finally:  # also when Stop (a rerun) or a closed page interrupts the run
            if model_id:
                board.release(model_id)
    if error is not None:
        show_error(obj, error)
        return None
    return result


def _waited(obj: Any) -> float:
    return float(st.session_state.pop(f"mm.waited.{who(obj)}", 0.0) or 0.0)


def _wait_for_model(board: Any, model_id: str, label: str, note: Any) -> float:
    """Take ``model_id`` on the board for ``label``, saying in ``note`` meanwhile who holds it;
    seconds waited. It makes no Streamlit call once the model is taken (the caller's ``finally``
    must cover everything from there)."""
    start = time.monotonic()
    while not board.acquire(model_id, label, timeout=0.5):
        held = board.holder(model_id)
        if held is not None:  # leaving the page ends the wait: Streamlit interrupts this call
            note.info(f"waiting for {held[0]} (started {held[1]:.0f} s ago) to finish on {model_id}")
    return time.monotonic() - start


def renderer_for(result: Any) -> Any | None:
    """The renderer of a result: one registered for ``probe:<name>`` first, then for its kind."""
    by_kind = {r.result_kind: r for r in state.registry().renderers()}
    kind = getattr(result, "kind", type(result).__name__)
    probe = getattr(result, "probe", None)
    for candidate in ([f"{kind}:{probe}"] if probe else []) + [kind]:
        if candidate in by_kind:
            return by_kind[candidate]
    return None


def show_result(result: Any, key: str, *, downloads: bool = True) -> None:
    """Draw one result's warnings, the result with its renderer, then its download buttons."""
    for warning in getattr(result, "warnings", None) or []:
        st.warning(warning)
    renderer = renderer_for(result)
    if renderer is None:
        st.warning(f"no renderer is registered for results of kind '{getattr(result, 'kind', '?')}'; "
                   "showing the downloads only")
    else:
        try:
            renderer.render(result, st)
        except Exception as exc:  # noqa: BLE001
            show_error(renderer, exc, "could not draw this result")
    if downloads:
        download_row(result, key)


def download_row(result: Any, key: str) -> None:
    stem = "-".join(str(getattr(result, f, "")) for f in ("probe", "method", "target") if getattr(result, f, ""))
    items = downloads_for(result, stem or getattr(result, "kind", "result"))
    for col, (i, item) in zip(st.columns(len(items)), enumerate(items)):
        col.download_button(item.label, item.data, file_name=item.filename, mime=item.mime,
                            key=f"{key}.download.{i}", on_click="ignore", width="stretch")


def show_results(results: Any, key: str, columns: int = 1) -> None:
    items = results if isinstance(results, list) else [results]
    if columns <= 1 or len(items) == 1:
        for i, item in enumerate(items):
            show_result(item, f"{key}.{i}")
        return
    for start in range(0, len(items), columns):
        for col, (i, item) in zip(st.columns(columns), enumerate(items[start:start + columns], start)):
            with col:
                show_result(item, f"{key}.{i}")


def plugin_panel(obj: Any, model: ClipModel, target: Any, run: Callable[[dict, Progress], Any], *, key: str,
                 source_key: str | None = None, defaults: dict | None = None, columns: int = 1,
                 run_label: str = "Run", store: ResultStore | None = None, auto: bool = False) -> Any | None:
    """Parameters, cached result or run button, progress, result and downloads for one plugin.

    ``auto``: the result is shown without a click (computed when no cache has it). With a ``store``
    too, it is read from the store, or computed and written there (the first view: computed once
    per machine)."""
    if obj.description:
        st.caption(obj.description)
    with st.expander("parameters"):
        values = param_widgets(obj.params, key, defaults=defaults)
    params = resolved(obj, values)
    if params is None:
        return None
    cache_key = result_key(model.model_id, obj.kind, obj.name, target, params, source_key)
    cache = state.results()
    result = cache.get(cache_key)
    if result is None and (auto or store is not None):
        stored_key = (*cache_key, str(model.meta.get("sha256", "")))  # other weights, other results
        result = store.get(stored_key) if store is not None else None
        if result is None:
            start = time.perf_counter()
            result = run_with_progress(obj, lambda progress: run(params, progress), model.model_id)
            if result is not None:
                if store is not None:
                    store.put(stored_key, result)
                st.session_state[f"{key}.took"] = (cache_key, time.perf_counter() - start, _waited(obj))
        else:
            st.session_state[f"{key}.took"] = (cache_key, None, 0.0)
        if result is not None:
            cache.put(cache_key, result)
    if result is None and st.button(f"{run_label} {obj.name}", key=f"{key}.run", type="primary"):
        start = time.perf_counter()
        result = run_with_progress(obj, lambda progress: run(params, progress), model.model_id)
        if result is not None:
            cache.put(cache_key, result)
            st.session_state[f"{key}.took"] = (cache_key, time.perf_counter() - start, _waited(obj))
            st.rerun()  # draw the page again from the cache: result in place of the button
    if result is not None:
        took = st.session_state.get(f"{key}.took")
        if took and took[0] == cache_key:
            waited = f" after waiting {took[2]:.0f} s for another session's run" if took[2] >= 1 else ""
            st.caption("from the disk cache (computed once on this machine)" if took[1] is None else
                       f"computed in {took[1]:.1f} s{waited} · " +
                       ("stored on disk for the next start" if store is not None
                        else "cached for every session until the app restarts"))
        show_results(result, key, columns=columns)
    return result


def probe_panel(probe: Any, model: ClipModel, target: Any, source: Any, source_key: str | None, *, key: str,
                defaults: dict | None = None, store: ResultStore | None = None) -> Any | None:
    """:func:`plugin_panel` for a probe: the image source goes in only when the probe reads images
    (and is asked for when none is chosen), and only then is it part of the cache key."""
    needs_images = probe.source == "images"
    if needs_images and source is None:
        st.info(f"{probe.name} reads images: choose an image source in the sidebar.")
        return None
    return plugin_panel(probe, model, target,
                        lambda params, progress: probe.run(model, target, source if needs_images else None, params,
                                                           progress),
                        key=key, source_key=source_key if needs_images else None, defaults=defaults, store=store)
