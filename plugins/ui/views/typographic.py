"""Typographic attack: write text on an image and watch the zero-shot prediction follow it; then
every probe that takes a word and reads images (the full protocol: every image of the source, fixed
positions; the word's concept decomposition)."""

import streamlit as st

from mmneurons.analysis import zero_shot_probabilities
from mmneurons.images import parse_color, write_text
from mmneurons.plugins.ui import panels, state, widgets
from mmneurons.plugins.ui.downloads import slug, table_csv
from mmneurons.results import image_to_png_bytes

st.title("Typographic attack")
model = widgets.model_picker()
if model is None:
    st.stop()
source, source_key = widgets.source_picker()
categories = widgets.source_categories(source)
labels_text = st.text_input("Class labels (comma-separated)", ", ".join(categories) or "cat, dog, car",
                            key="typo.labels", help="the zero-shot classifier's classes")
labels = [x.strip() for x in labels_text.split(",") if x.strip()]
if len(labels) < 2:
    st.info("Give at least two class labels.")
    st.stop()

image_col, edit_col = st.columns([1, 1])
with image_col:
    image, image_id = widgets.image_picker(source, "typo.image")
if image is None:
    st.stop()
with edit_col:
    text = st.text_input("Text to write", labels[1] if len(labels) > 1 else labels[0], key="typo.text")
    x = st.slider("Position, left to right", 0.0, 1.0, 0.5, 0.05, key="typo.x")
    y = st.slider("Position, top to bottom", 0.0, 1.0, 0.8, 0.05, key="typo.y")
    size = st.slider("Text height (fraction of the image)", 0.02, 1.0, 0.2, 0.01, key="typo.size")
    color = st.text_input("Text color", "black", key="typo.color", help="a name (black, white, red, yellow) or R,G,B")
    box = st.text_input("Box color", "white", key="typo.box", help="backing box: a color, or none")
try:
    attacked = write_text(image.resize((model.image_size, model.image_size)), text, (x, y), size=size,
                          color=parse_color(color) or (0, 0, 0), box=parse_color(box)) if text else image
except ValueError as exc:
    st.error(str(exc))
    st.stop()

try:
    probs = zero_shot_probabilities(model, [image, attacked], labels)
except Exception as exc:  # noqa: BLE001 - e.g. a label the demo tokenizer cannot encode
    st.error(f"zero-shot classification failed: {type(exc).__name__}: {exc}")
    st.stop()
before, after = labels[int(probs[0].argmax())], labels[int(probs[1].argmax())]
st.markdown(f"Prediction: **{before}** → **{after}**" + ("" if before != after else " (unchanged)"))
cols = st.columns(2)
for col, im, p, title in zip(cols, (image, attacked), probs, ("before", "after")):
    with col:
        st.image(im.resize((256, 256)), caption=title)
        top = p.argsort()[::-1][:5]
        st.dataframe([{"class": labels[i], "probability": float(p[i])} for i in top], hide_index=True,
                     width="stretch")
rows = [{"class": label, "before": float(probs[0][i]), "after": float(probs[1][i])} for i, label in enumerate(labels)]
left, right = st.columns(2)
left.download_button("PNG: attacked image", lambda: image_to_png_bytes(attacked),
                     file_name=f"{slug(text)}-attacked.png",
                     mime="image/png", on_click="ignore", key="typo.download.png", width="stretch")
right.download_button("CSV: predictions", lambda: table_csv(rows), file_name=f"{slug(text)}-predictions.csv",
                      mime="text/csv", on_click="ignore", key="typo.download.csv", width="stretch")

probes = [p for p in panels.usable(state.registry().probes(), model) if p.accepts("text") and p.source == "images"]
if probes:
    st.markdown("#### The word over the image source")
    st.caption("Every probe that takes a word and reads images: the attack's full protocol (every image, fixed "
               "positions), the word as a combination of a layer's units, ...")
for tab, probe in zip(st.tabs([p.name for p in probes]) if probes else [], probes):
    with tab:
        panels.probe_panel(probe, model, text, source, source_key, key=f"typo.probe.{probe.name}",
                           defaults=widgets.context_defaults(probe, source, labels=", ".join(labels)))
