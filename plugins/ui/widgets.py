"""Widgets every page shares: parameter forms generated from a plugin's ``params``, and the model,
layer, unit, image-source and image pickers. Picks are kept in the URL (see ``state``)."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Sequence

import streamlit as st

from mmneurons.access import allowed_models
from mmneurons.images import ImageLoadError, decode_image
from mmneurons.models import ClipModel, default_model_id
from mmneurons.kinds import plugin_params
from mmneurons.params import Param, ParamError

from . import state

#: image types accepted for upload
UPLOAD_TYPES = ("png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff")


def upload_limit_mb() -> int:
    """The per-file upload limit: `mmneurons app --max-upload-mb` (MMNEURONS_MAX_UPLOAD_MB), default 20."""
    try:
        return max(1, int(os.environ.get("MMNEURONS_MAX_UPLOAD_MB", "20")))
    except ValueError:
        return 20


def _initial(key: str, name: str, default: Any, convert=str) -> None:
    """Seed widget ``key`` before it is drawn: a pending jump (``open unit``), else its current
    value, else the URL or the session's last choice, else ``default``.

    The value is assigned even when the key exists: a widget drawn by another page is another
    widget to Streamlit, and only an assigned value carries over to this page's.
    """
    pending = st.session_state.get("mm.pending", {})
    if name in pending:
        st.session_state[key] = pending.pop(name)
    elif key in st.session_state:
        st.session_state[key] = st.session_state[key]
    else:
        st.session_state[key] = state.remembered(name, default, convert)


def open_unit(model_id: str, unit: str) -> None:
    """Button callback: show ``unit`` (``layer:channel``) on the Neuron page."""
    layer, _, channel = unit.rpartition(":")
    st.session_state["mm.pending"] = {"model": model_id, "layer": layer, "unit": int(channel)}
    st.session_state["mm.goto"] = "neuron"


# -- parameters ----------------------------------------------------------------------------------
def param_widgets(params: Sequence[Param], key: str, *, defaults: dict | None = None,
                  container: Any = None) -> dict[str, Any]:
    """One widget per parameter (select box for choices, checkbox for bools, number inputs with the
    declared bounds, text otherwise); ``defaults`` overrides the declared defaults for this page."""
    box = container if container is not None else st
    defaults = defaults or {}
    values: dict[str, Any] = {}
    for p in params:
        wkey = f"{key}.{p.name}"
        label = p.name.replace("_", " ")
        default = defaults.get(p.name, p.default)
        if p.choices is not None:
            choices = list(p.choices)
            values[p.name] = box.selectbox(label, choices, index=choices.index(default) if default in choices else 0,
                                           help=p.help, key=wkey)
        elif p.type == "bool":
            values[p.name] = box.checkbox(label, value=bool(default), help=p.help, key=wkey)
        elif p.type in ("int", "float"):
            cast = int if p.type == "int" else float
            kwargs: dict[str, Any] = {"help": p.help, "key": wkey}
            if p.min is not None:
                kwargs["min_value"] = cast(p.min)
            if p.max is not None:
                kwargs["max_value"] = cast(p.max)
            if p.type == "int":
                kwargs["step"] = 1
            else:
                kwargs["format"] = "%g"
                kwargs["step"] = _float_step(default)
            value = None if default is None else cast(default)
            values[p.name] = box.number_input(label, value=value, **kwargs)
        else:
            text = box.text_input(label, value="" if default is None else str(default), help=p.help, key=wkey)
            values[p.name] = None if text == "" and p.default is None else text
    return values


def _float_step(default: Any) -> float:
    """A step of the default's order of magnitude (0.02 -> 0.01, 1.5 -> 1)."""
    if not default:
        return 0.1
    return float(10 ** math.floor(math.log10(abs(float(default)))))


def resolved(plugin: Any, values: dict) -> dict | None:
    """``values`` checked against the plugin's ``params``; None after showing the error."""
    try:
        return plugin_params(plugin, values)
    except ParamError as exc:
        st.error(str(exc))
        return None


# -- model, layer, unit --------------------------------------------------------------------------
def model_picker() -> ClipModel | None:
    """Sidebar: any model id (the providers' lists are suggestions; type another to load it)."""
    default = default_model_id()
    _initial("w.model", "model", default)
    options = [default]
    offered = allowed_models()  # an app served to others offers only these (mmneurons.access)
    for provider in state.registry().model_providers() if offered is None else ():
        try:
            options += [m for m in provider.list_models() if m not in options]
        except Exception:  # noqa: BLE001 - a listing failure must not hide the picker
            continue
    options += [m for m in offered or () if m not in options]
    if st.session_state["w.model"] not in options:
        options.insert(0, st.session_state["w.model"])
    model_id = st.sidebar.selectbox("Model", options, key="w.model", accept_new_options=True,
                                    help="Pick or type a model id, e.g. openclip:RN50x4@openai or demo:shapes.")
    model_id = (model_id or default).strip()
    state.remember("model", model_id)
    return state.get_model(model_id)


def featured_unit(model: ClipModel) -> tuple[str, int] | None:
    """(layer, channel) of the unit the model's provider says is worth seeing first, if any."""
    for text in model.featured_units[:1]:
        layer, _, channel = text.rpartition(":")
        if layer and channel.isdigit():
            return layer, int(channel)
    return None


def layer_picker(model: ClipModel, prefer: Sequence[str] = ()) -> str:
    """Sidebar: the layer; first the featured unit's, else the first of ``prefer`` (an atlas's
    layers) the model has, else the model's default."""
    names = [info.name for info in model.layers()]
    shapes = {info.name: info.shape for info in model.layers()}
    featured = featured_unit(model)
    preferred = next((name for name in prefer if name in names), None)
    _initial("w.layer", "layer", featured[0] if featured and featured[0] in names else
             preferred or model.default_layer())
    if st.session_state["w.layer"] not in names:
        st.sidebar.warning(f"{model.model_id} has no layer {st.session_state['w.layer']!r}; showing the default")
        st.session_state["w.layer"] = model.default_layer()
    layer = st.sidebar.selectbox("Layer", names, key="w.layer",
                                 format_func=lambda n: f"{n}  ({' x '.join(map(str, shapes[n]))})")
    state.remember("layer", layer)
    return layer


def unit_picker(model: ClipModel, layer: str) -> int:
    channels = model.layer_info(layer).channels
    featured = featured_unit(model)
    _initial("w.unit", "unit", featured[1] if featured and featured[0] == layer else 0, int)
    if not 0 <= int(st.session_state["w.unit"]) < channels:
        st.sidebar.warning(f"{layer} has {channels} units; unit {st.session_state['w.unit']} does not exist")
        st.session_state["w.unit"] = 0
    unit = int(st.sidebar.number_input(f"Unit (0-{channels - 1})", min_value=0, max_value=channels - 1,
                                       step=1, key="w.unit"))
    state.remember("unit", unit)
    return unit


# -- images --------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=16)
def _make_source(name: str, params_json: str) -> Any:
    factory = state.registry().get("mmneurons_image_sources", name)
    return factory.create(**json.loads(params_json))


def source_picker(key: str = "w.source", container: Any = None) -> tuple[Any, str] | tuple[None, None]:
    """An image source from any registered factory, with its parameters; (source, cache key)."""
    box = container if container is not None else st.sidebar
    factories = state.registry().image_sources()
    if not factories:
        box.error("no image source plugin is registered")
        return None, None
    names = [f.name for f in factories]
    default = "demo_shapes" if "demo_shapes" in names else names[0]
    _initial(key, "source", default)
    if st.session_state[key] not in names:
        st.session_state[key] = default
    name = box.selectbox("Images for probes", names, key=key,
                         help="; ".join(f"{f.name}: {f.description}" for f in factories))
    state.remember("source", name)
    factory = factories[names.index(name)]
    with box.expander(f"{name} settings"):
        values = param_widgets(factory.params, f"{key}.{name}")
    try:
        params = plugin_params(factory, values)
        source = _make_source(name, json.dumps(params, sort_keys=True))
    except Exception as exc:  # noqa: BLE001 - bad folder, bad parameter: say so, keep the page
        box.error(f"image source '{name}' (plugin '{getattr(factory, 'provided_by', '?')}'): {exc}")
        return None, None
    box.caption(source.describe())
    return source, f"{name}:{json.dumps(params, sort_keys=True)}"


def image_picker(source: Any, key: str) -> tuple[Any, str] | tuple[None, None]:
    """An uploaded image (size-limited, fully decoded and checked) or one from the image source."""
    limit = upload_limit_mb()
    upload = st.file_uploader("Upload an image", type=list(UPLOAD_TYPES), key=f"{key}.upload",
                              max_upload_size=limit, help=f"at most {limit} MB")
    if upload is not None:
        data = upload.getvalue()  # the server enforces the limit too; this also covers other front ends
        if len(data) > limit * 2**20:
            st.error(f"{upload.name}: {len(data) / 2**20:.1f} MB is over the {limit} MB limit")
            return None, None
        try:
            return decode_image(data, upload.name), upload.name
        except ImageLoadError as exc:
            st.error(f"Cannot use the upload: {exc}")
            return None, None
    if source is None or len(source) == 0:
        st.info("Upload an image, or choose an image source in the sidebar.")
        return None, None
    index = int(st.number_input(f"...or image number (0-{len(source) - 1}) from {source.describe()}",
                                min_value=0, max_value=len(source) - 1, step=1, key=f"{key}.index"))
    try:
        return source.load(index), source.record(index).id
    except ImageLoadError as exc:
        st.error(str(exc))
        return None, None


def source_categories(source: Any, limit: int = 200) -> list[str]:
    """The distinct categories of a source (e.g. the demo's concepts), for label defaults."""
    if source is None:
        return []
    seen: list[str] = []
    for i in range(min(len(source), 5000)):
        category = source.record(i).category
        if category is not None and category not in seen:
            seen.append(category)
            if len(seen) >= limit:
                break
    return seen


def context_defaults(obj: Any, source: Any, **extra: Any) -> dict[str, Any]:
    """Page defaults for a plugin's parameters: a parameter declared ``default_from="categories"``
    gets the image source's categories (the demo's twelve concepts, a folder's subfolder names), and
    ``extra`` fills parameters the plugin has (e.g. ``top`` = all units on the Layer page)."""
    names = {p.name: p for p in obj.params}
    defaults = {k: v for k, v in extra.items() if k in names}
    categories = source_categories(source)
    for name, param in names.items():
        if param.default_from == "categories" and categories and name not in defaults:
            defaults[name] = ", ".join(categories)
    return defaults
