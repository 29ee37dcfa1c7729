"""Hook specifications: the only contract a plugin sees.

Each hook returns a list of plugin objects of one kind (see :mod:`mmneurons.kinds`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click

    from .kinds import Attributor, ImageSourceFactory, ModelProvider, Probe, Renderer, SAESource, Visualizer

PROJECT = "mmneurons"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def mmneurons_model_providers() -> "list[ModelProvider]":
    """Return ModelProvider objects that load models from an id like ``provider:name@tag``."""


@hookspec
def mmneurons_image_sources() -> "list[ImageSourceFactory]":
    """Return ImageSourceFactory objects that build image sources (folders, word lists, ...)."""


@hookspec
def mmneurons_visualizers() -> "list[Visualizer]":
    """Return Visualizer objects that render feature visualizations of units."""


@hookspec
def mmneurons_attributors() -> "list[Attributor]":
    """Return Attributor objects that attribute a target to input pixels (Captum underneath)."""


@hookspec
def mmneurons_probes() -> "list[Probe]":
    """Return Probe objects that analyse a unit or a layer over images or words."""


@hookspec
def mmneurons_renderers() -> "list[Renderer]":
    """Return Renderer objects that draw one result kind (or ``probe:<name>``) in the front end."""


@hookspec
def mmneurons_saes() -> "list[SAESource]":
    """Return SAESource objects that ship sparse autoencoders for models (their features become layers)."""


@hookspec
def mmneurons_commands() -> "list[click.Command]":
    """Return click commands (or groups) to add to the ``mmneurons`` command line."""
