"""Feature visualization on Lucent's building blocks, made right for CLIP, in Lucent's layout:

- :mod:`.param`: image parameterizations (Lucid's FFT + color decorrelation, with Lucent's constants);
- :mod:`.maco`: MACO's parameterization (the Fourier phase under a fixed magnitude);
- :mod:`.window`: one instance in a centered disk (the ``channel`` visualizer's default);
- :mod:`.transform`: transformation robustness (the paper's pad / jitter / scale / rotate, or stronger);
- :mod:`.redirect`: ReLU gradient redirection for units inactive on the starting image;
- :mod:`.render`: the render loop, driven by one :class:`~.render.RenderSpec`;
- :mod:`.visualizers`: the visualizer plugins (channel, neuron, negative, direction,
  text_direction, diversity), built on Lucent's objectives;
- :mod:`.faceted`: the paper's faceted visualization (a unit through a facet probe; its facets come
  from `mmneurons facet train`, :mod:`mmneurons.plugins.facet_commands`).

Lucent's ``render_vis`` is unfit for CLIP as it is (ImageNet normalization, hooks on every module
that are never removed, ``cuda:0``, the whole network every step); docs/architecture.md says what
is kept from Lucent and why.
"""

from .maco import MacoImage
from .param import PARAMETERIZATIONS, FFTImage
from .redirect import redirected_relus
from .render import Job, LayerReader, RenderSpec, read_baselines, render, resolve_precision, target_warnings
from .transform import TRANSFORMS, affine_transform, paper_transform
from .window import windowed
from .visualizers import (BASE_VISUALIZERS, COMMON_PARAMS, ChannelVisualizer, DirectionVisualizer,
                          DiversityVisualizer, LucentVisualizer, NegativeVisualizer, NeuronVisualizer,
                          TextDirectionVisualizer)
from .faceted import FacetedVisualizer, facet_objective

VISUALIZERS = (*BASE_VISUALIZERS, FacetedVisualizer)

__all__ = [
    "COMMON_PARAMS", "ChannelVisualizer", "DirectionVisualizer", "DiversityVisualizer", "FFTImage", "MacoImage",
    "PARAMETERIZATIONS", "affine_transform", "windowed",
    "FacetedVisualizer", "Job", "LayerReader", "facet_objective",
    "LucentVisualizer", "NegativeVisualizer", "NeuronVisualizer", "RenderSpec", "TRANSFORMS",
    "TextDirectionVisualizer", "VISUALIZERS", "paper_transform", "read_baselines", "redirected_relus", "render",
    "resolve_precision", "target_warnings",
]
