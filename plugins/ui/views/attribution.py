"""Attribution: which pixels of an image drive a unit, a zero-shot class or a free prompt, with any
registered attributor; and which units of a layer carry a class (the "class" probes)."""

import hashlib

import streamlit as st

from mmneurons.captum import PromptTarget, ZeroShotTarget
from mmneurons.images import ListSource
from mmneurons.plugins.ui import panels, state, widgets

st.title("Attribution")
model = widgets.model_picker()
if model is None:
    st.stop()
source, _ = widgets.source_picker()
registry = state.registry()

left, right = st.columns([1, 2])
with left:
    image, image_id = widgets.image_picker(source, "attr.image")
    if image is not None:
        st.image(image, caption=image_id, width=256)
if image is None:
    st.stop()
image_key = f"{image_id}:{hashlib.sha1(image.tobytes()).hexdigest()[:12]}"

with right:
    kind = st.radio("Explain", ["unit", "class label", "prompt"], horizontal=True, key="attr.kind")
    goal, target_kind = None, "class"
    try:
        if kind == "unit":
            names = [info.name for info in model.layers()]
            shown = state.remembered("layer", model.default_layer())  # the unit last shown on another page
            layer = st.selectbox("Layer", names, index=names.index(shown) if shown in names else
                                 names.index(model.default_layer()), key="attr.layer")
            channels = model.layer_info(layer).channels
            start = int(state.remembered("unit", 0, int))
            channel = st.number_input(f"Unit (0-{channels - 1})", 0, channels - 1,
                                      start if 0 <= start < channels else 0, key="attr.unit")
            goal, target_kind = f"{layer}:{int(channel)}", "unit"
        elif kind == "class label":
            categories = widgets.source_categories(source)
            labels_text = st.text_input("Class labels (comma-separated)", ", ".join(categories), key="attr.labels")
            labels = [x.strip() for x in labels_text.split(",") if x.strip()]
            if not labels:
                st.info("Give the class labels of the zero-shot classifier.")
                st.stop()
            label = st.selectbox("Class to explain", labels, key="attr.label")
            goal = ZeroShotTarget(label, tuple(labels))
        else:
            prompt = st.text_input("Prompt", key="attr.prompt", placeholder="e.g. a photo of a star").strip()
            if not prompt:
                st.info("Type the prompt whose image-text similarity to explain.")
                st.stop()
            goal = PromptTarget(prompt)
    except ValueError as exc:
        st.error(str(exc))
        st.stop()

target_text = str(goal) if not isinstance(goal, ZeroShotTarget) else f"{goal}|{','.join(goal.labels)}"
attributors = panels.usable(registry.attributors(), model)
st.markdown("#### Pixels")
if not attributors:
    st.info("No attribution plugin is installed.")
for tab, attributor in zip(st.tabs([a.name for a in attributors]) if attributors else [], attributors):
    with tab:
        panels.plugin_panel(attributor, model, target_text,
                            lambda params, progress, a=attributor: a.attribute(
                                model, ListSource([image], ids=[image_id]), goal, params, progress),
                            key=f"attr.{attributor.name}", source_key=image_key, run_label="Attribute with")

if target_kind == "class":
    probes = [p for p in panels.usable(registry.probes(), model) if p.accepts("class")]
    if probes:
        st.markdown("#### Units")
    for tab, probe in zip(st.tabs([p.name for p in probes]) if probes else [], probes):
        with tab:
            one_image = ListSource([image], ids=[image_id])
            panels.plugin_panel(probe, model, target_text,
                                lambda params, progress, p=probe, s=one_image: p.run(model, goal, s, params, progress),
                                key=f"attr.probe.{probe.name}", source_key=image_key)
