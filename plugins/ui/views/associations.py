"""Associations: what the model ties together. Every probe that takes a list of concepts (the
association audit): the units two or more concepts share and how much of one's logit the other's
units carry, or, with attributes, the skew of the zero-shot head and of the units across groups.
A unit's ties are on the Neuron page."""

import streamlit as st

from mmneurons.plugins.ui import panels, state, widgets

st.title("Associations")
st.caption("Associations in the model on these images: what it ties together, not why, and not anyone's intent; "
           "the training data decides them.")
model = widgets.model_picker()
if model is None:
    st.stop()
source, source_key = widgets.source_picker()
categories = widgets.source_categories(source)
concepts = st.text_input("Concepts or groups (comma-separated)", ", ".join(categories[:6]) or "ring, circle",
                         key="assoc.concepts",
                         help="two or more concepts: the units they share; with attributes (in the probe's "
                              "parameters): the groups whose skew is audited")
names = [c.strip() for c in concepts.split(",") if c.strip()]
if len(names) < 2:
    st.info("Give at least two concepts.")
    st.stop()
probes = [p for p in panels.usable(state.registry().probes(), model) if p.accepts("concepts")]
if not probes:
    st.warning("No probe that takes concepts is installed.")
for tab, probe in zip(st.tabs([p.name for p in probes]) if probes else [], probes):
    with tab:
        panels.probe_panel(probe, model, ",".join(names), source, source_key, key=f"assoc.probe.{probe.name}",
                           defaults=widgets.context_defaults(probe, source))
