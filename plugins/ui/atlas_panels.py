"""Pages read from an atlas instead of computing: the Neuron page's stored panels, the Layer page's
table of every unit, the Search page's label and word search.

Which atlas: ``mmneurons app --atlas PATH`` (``MMNEURONS_ATLAS``; ``none``: never read one),
else the one the app builds on first start for a model whose provider declares a quick recipe
(``model.meta["atlas"]``, the demo model's ``layer4.0``). An atlas is used for a model only when
it was built from that model (id and weights) and holds the layer; otherwise the pages compute as
before.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import streamlit as st

from mmneurons.analysis.render_check import PATH_HELP
from mmneurons.atlas import Atlas, AtlasError, BuildOptions, build_atlas, weights_hash
from mmneurons.models import ClipModel

from . import state
from .cache import cache_dir
from .format import enlarge, fmt

ATLAS_ENV = "MMNEURONS_ATLAS"

#: columns the layer table leaves out: content hashes of files, shown as images instead
HIDDEN = ("vis.file", "examples.maps")


@st.cache_resource(show_spinner=False, max_entries=8)
def _weights(model_id: str, device: str, _model: ClipModel) -> str:
    return weights_hash(_model)


def own_atlas(model: ClipModel) -> Path | None:
    """Where the app keeps the atlas it builds for ``model`` (None: its provider declares no recipe)."""
    if not model.meta.get("atlas"):
        return None
    digest = str(model.meta.get("sha256", ""))[:12]
    return cache_dir() / "atlas" / re.sub(r"[^A-Za-z0-9._-]", "_", f"{model.model_id}-{digest}")


def atlas_path(model: ClipModel) -> Path | None:
    given = os.environ.get(ATLAS_ENV)
    if given == "none":
        return None
    return Path(given) if given else own_atlas(model)


def atlas_for(model: ClipModel, layer: str | None, *, quiet: bool = False) -> Atlas | None:
    """The atlas that holds ``layer`` (None: any layer) of this very model, opened for this script
    run, or None (unless ``quiet``, with a note saying why an atlas that was given does not apply)."""
    path = atlas_path(model)
    if path is None or not (path / "atlas.sqlite").is_file():
        return None
    try:
        book = Atlas.open(path)
    except AtlasError as exc:
        if not quiet:
            st.warning(f"atlas not used: {exc}")
        return None
    ident, why = book.identity, ""
    if ident.get("model_id") != model.model_id:
        why = f"the atlas {path} is of {ident.get('model_id')}, not {model.model_id}: computing instead"
    elif ident.get("weights") != _weights(model.model_id, str(model.device), model):
        why = f"the atlas {path} was built from other weights of {model.model_id}: computing instead"
    elif not (book.has(layer) if layer else book.layers()):
        why = "-"  # another layer: nothing to say
    if why:
        book.close()
        if not quiet and why != "-":
            st.caption(why)
        return None
    return book


def atlas_layers(model: ClipModel) -> list[str]:
    """The layers the model's atlas holds (none when no atlas applies), for the layer picker."""
    book = atlas_for(model, None, quiet=True)
    if book is None:
        return []
    with book:
        return [layer.name for layer in book.layers()]


def built_caption(book: Atlas, layer: str, stages: list[str] | None = None) -> str:
    infos = book.stages(layer)
    parts = []
    for name, info in infos.items():
        if stages is not None and name not in stages:
            continue
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.finished)) if info.finished else info.state
        shown = {k: v for k, v in info.params.items() if k in ("k", "steps", "visualizer", "n_words", "z_min")}
        parts.append(f"{name} ({when}{', ' if shown else ''}{', '.join(f'{k}={v}' for k, v in shown.items())})")
    return f"from the atlas {book.folder}: " + "; ".join(parts)


def ensure_own_atlas(model: ClipModel) -> None:
    """Build the model's quick atlas on first start (its provider's recipe), with progress; a build
    that stops half-way is continued on the next page load."""
    if os.environ.get(ATLAS_ENV):
        return
    recipe, path = model.meta.get("atlas"), own_atlas(model)
    failed = f"mm.atlas_failed.{model.model_id}"
    if not recipe or path is None or failed in st.session_state:
        return
    if (path / "atlas.sqlite").is_file():
        try:
            with Atlas.open(path) as book:
                if book.builds() and book.builds()[-1].state == "done":
                    return
        except AtlasError:
            pass
    registry = state.registry()
    factory = registry.get("mmneurons_image_sources", recipe["source"])
    source = factory.create(**recipe.get("source_params", {}))
    options = BuildOptions(layers=list(recipe["layers"]), k=recipe.get("k", 8), vis_params=recipe.get("vis_params", {}),
                           probe_params=recipe.get("probe_params", {}), vis_batch=recipe.get("vis_batch", 64))
    with st.status(f"First start: building the atlas of {model.model_id} {', '.join(options.layers)} "
                   f"(once; kept in {path})", expanded=True) as status:
        line = st.empty()
        bar = st.progress(0.0)
        start = time.perf_counter()

        def stage_progress(name: str):
            from contextlib import contextmanager

            @contextmanager
            def progress():
                line.write(name)
                yield lambda done, total, message="": bar.progress(min(1.0, done / total) if total else 0.0,
                                                                   text=f"{name}: {done}/{total}")
            return progress()

        try:
            with model.lock:
                build_atlas(model, path, source, source.describe(), options, registry=registry,
                            stage_progress=stage_progress)
        except (AtlasError, OSError, sqlite3.Error, ValueError) as exc:  # said once; the pages compute instead
            st.session_state[failed] = f"{type(exc).__name__}: {exc}"
            status.update(label="the atlas could not be built", state="error", expanded=False)
            st.warning(f"the quick atlas of {model.model_id} could not be built ({exc}); the pages compute "
                       f"instead, and the next start tries again")
            return
        status.update(label=f"atlas built in {time.perf_counter() - start:.0f} s", state="complete", expanded=False)


def file_image(book: Atlas, digest: str | None, width: int = 0) -> Any:
    from PIL import Image

    if not digest:
        return None
    image = Image.open(book.file(digest))
    return enlarge(image, width) if width else image


# -- Neuron --------------------------------------------------------------------------------------
def readable(panel):
    """A panel that shows what goes wrong with the atlas (a file removed, a damaged database) as a
    warning, and lets the page go on computing."""
    import functools

    @functools.wraps(panel)
    def draw(*args: Any, **kwargs: Any) -> None:
        try:
            panel(*args, **kwargs)
        except (AtlasError, OSError, sqlite3.Error) as exc:
            st.warning(f"the atlas could not be read ({exc}); recompute below")

    return draw


@readable
def unit_panel(book: Atlas, unit: str) -> None:
    """Everything the atlas holds about ``unit``, at once."""
    stored = book.unit(unit)
    v = stored.values
    if not v:
        st.info(f"the atlas holds nothing for {unit} yet (its build has not reached it)")
        return
    left, right = st.columns([1, 2])
    with left:
        vis = v.get("vis")
        if vis:
            st.image(file_image(book, vis["file"], 256), caption=f"channel visualization · activation "
                     f"{fmt(vis.get('activation'))} (gray {fmt(vis.get('gray'))}, noise {fmt(vis.get('noise'))})")
            if vis.get("samples"):
                st.caption("diversity samples")
                st.image([file_image(book, d, 96) for d in vis["samples"]])
            for warning in vis.get("warnings") or []:
                st.caption(warning)
            path = v.get("path")
            if path:
                st.caption(f"path check {fmt(path['score'])}: {PATH_HELP}")
                if path.get("warning"):
                    st.warning(path["warning"])
    with right:
        label = (v.get("neuron_label") or {}).get("labels")
        if label:
            further = [x for x in str(label.get("labels") or "").split(", ") if x and x != label["label"]]
            st.markdown(f"**Label:** {label['label']}{' (also ' + ', '.join(further) + ')' if further else ''} · "
                        f"confidence {fmt(label.get('confidence'))} · score {fmt(label.get('score'))} · runners-up "
                        f"{', '.join(label.get('runners_up') or []) or label.get('runner_up', '')}")
            shown = {e["image"]: e for e in ((v.get("examples") or {}).get("top") or [])}
            evidence = [shown[i] for i in label.get("evidence") or [] if i in shown]
            if evidence:  # the evidence images the atlas holds thumbnails of (its top examples)
                st.image([file_image(book, e["file"], 96) for e in evidence],
                         caption=[e["image"] for e in evidence])
            elif label.get("evidence"):
                st.caption("evidence images: " + ", ".join(label["evidence"]))
        words = (v.get("rendered_words") or {}).get("units")
        if words:
            st.markdown(f"**Top rendered words:** {words.get('words', '')}")
        ranking = (v.get("modality") or {}).get("ranking")
        if ranking:
            score = ranking.get("score")
            st.markdown(f"**Modality:** top concept *{ranking.get('concept')}* · multimodality "
                        f"{'n/a (modalities disagree)' if score is None else fmt(score)}"
                        f"{' · multimodal' if ranking.get('multimodal') else ''}")
            profile = ranking.get("profile")
            if profile:
                data = {"concept": profile["concepts"], **dict(zip(profile["modalities"], profile["means"]))}
                st.bar_chart(data, x="concept", y=profile["modalities"], stack=False, height=220)
        for name, value in v.items():  # stages of third-party probes: their row as it is
            if name not in ("vis", "examples", "neuron_label", "rendered_words", "modality"):
                st.markdown(f"**{name}:** " + " · ".join(f"{k}: {fmt(x)}" for row in value.values()
                                                          if isinstance(row, dict) for k, x in row.items()))
    examples = v.get("examples")
    if examples:
        for side in ("top", "bottom"):
            items = examples.get(side) or []
            if items:
                st.markdown(f"**{'Top' if side == 'top' else 'Bottom'} dataset examples** "
                            f"(of {examples.get('images')} images)")
                st.image([file_image(book, e["file"], 96) for e in items],
                         caption=[f"{e.get('category') or e['image']} {fmt(e['activation'])}" for e in items])
    st.caption(built_caption(book, stored.layer))


# -- Layer ---------------------------------------------------------------------------------------
def filter_rows(rows: list[dict], column: str, text: str) -> list[dict]:
    """Rows whose ``column`` contains ``text`` (words), or is at least ``text`` (a number)."""
    text = text.strip()
    if not text or not column:
        return rows
    try:
        least = float(text)
    except ValueError:
        return [r for r in rows if text.lower() in str(r.get(column) or "").lower()]
    return [r for r in rows if isinstance(r.get(column), (int, float)) and r[column] >= least]


def layer_table(book: Atlas, layer: str) -> list[dict]:
    """The layer's rows for the page (file hashes left out)."""
    return [{k: v for k, v in row.items() if k not in HIDDEN} | {"_vis": row.get("vis.file")}
            for row in book.layer(layer).table()]


# -- Search --------------------------------------------------------------------------------------
def search_rows(book: Atlas, query: str, limit: int = 48) -> list[dict]:
    """Units whose label or top words match, best first, one row each with what matched."""
    rows: dict[str, dict] = {}
    for hit in book.search(query, limit=limit * 3):
        row = rows.setdefault(hit.unit, {"unit": hit.unit})
        row[hit.stage] = hit.text
        if len(rows) >= limit:
            break
    return list(rows.values())


#: what a unit's card shows, when the atlas holds it: column -> name on the card
CARD_COLUMNS = {"neuron_label.labels.label": "label", "rendered_words.units.best": "word",
                "modality.ranking.concept": "concept", "modality.ranking.score": "multimodality",
                "examples.max": "max activation"}


@readable
def layer_panel(model: ClipModel, book: Atlas, layer: str, key: str = "layer.atlas") -> None:
    """Every unit of the layer from the atlas: filter and sort by any stored column, the table of
    all units, and cards with the stored visualizations."""
    from .grid import unit_cards
    from .units_table import sort_rows

    rows = layer_table(book, layer)
    columns = [c for c in rows[0] if c not in ("unit", "_vis")] if rows else []
    numeric = [c for c in columns if any(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool)
                                         for r in rows)]
    default = next((c for c in ("modality.ranking.score", "examples.max") if c in numeric), None)
    top = st.columns([2, 2, 2, 1])
    order_by = top[0].selectbox("Sort by", ["unit"] + columns, key=f"{key}.sort",
                                index=1 + columns.index(default) if default else 0)
    where = top[1].selectbox("Filter on", columns, key=f"{key}.where",
                             index=columns.index("neuron_label.labels.label")
                             if "neuron_label.labels.label" in columns else 0) if columns else ""
    text = top[2].text_input("contains (words) or at least (a number)", key=f"{key}.filter")
    descending = top[3].toggle("descending", value=True, key=f"{key}.descending")
    chosen = sort_rows(filter_rows(rows, where, text), None if order_by == "unit" else order_by, descending)
    st.caption(f"{len(chosen)} of {len(rows)} units · {built_caption(book, layer)}")
    st.dataframe([{k: v for k, v in r.items() if k != "_vis"} for r in chosen], hide_index=True, height=280,
                  key=f"{key}.table")
    if not chosen:
        return
    shown = st.slider("Units shown as cards", 1, len(chosen), min(24, len(chosen)), key=f"{key}.shown") \
        if len(chosen) > 1 else 1  # a slider needs two values to slide between
    cards = [{"unit": r["unit"], **{name: r.get(c) for c, name in CARD_COLUMNS.items() if c in r}}
             for r in chosen[:shown]]
    thumbs = {r["unit"]: file_image(book, r["_vis"]) for r in chosen[:shown] if r.get("_vis")}
    unit_cards(model, cards, thumbs, key=f"{key}.cards")


@readable
def search_panel(model: ClipModel, book: Atlas, query: str, key: str = "search.atlas") -> None:
    """Units of the atlas whose label or top rendered words match ``query``."""
    from .grid import unit_cards

    hits = search_rows(book, query)
    st.markdown("#### In the atlas: labels and top words")
    if not hits:
        st.caption(f"no unit of the atlas {book.folder} has a label or top word starting with {query!r}")
        return
    st.caption(f"{len(hits)} units · {book.folder}")
    thumbs = {}
    for row in hits:
        vis = book.unit(row["unit"]).values.get("vis")
        if vis:
            thumbs[row["unit"]] = file_image(book, vis["file"])
    unit_cards(model, hits, thumbs, key=f"{key}.cards")
