"""Faceted feature visualization (Goh et al. 2021): a unit's channel objective plus the facet term
``w^T (g(x) * grad f(g(x)))``, with ``w`` a facet probe on the lower layer ``g``
(:mod:`mmneurons.analysis.facets`, trained by ``mmneurons facet train``).

``grad f(g)`` is taken as a constant of each step (no second-order term). Between ``g`` and a unit
of a ReLU network ``f`` is piecewise linear in ``g``, so its gradient is piecewise constant and the
dropped derivative is zero almost everywhere: the step is exact there, costs one partial backward
instead of a double backward, and runs through the folded tower's kernels and ReLU redirection,
which have no double backward. On a ViT (GELU, attention) it is an approximation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from lucent.optvis import objectives

from mmneurons.analysis.facets import Facet
from mmneurons.models import ClipModel
from mmneurons.params import Param

from .render import Job, RenderSpec
from .visualizers import ChannelVisualizer

#: the facet term's default weight (objective weights have mean absolute value 1): chosen on the
#: embedded model's multimodal units, docs/paper.md
DEFAULT_FACET_WEIGHT = 1.0


#: the facet term: the paper's (what the unit's activation is made of) or the plain probe score
FACET_FORMS = ("attribution", "activation")


def facet_objective(jobs: Sequence[Job], layer: str, weights: torch.Tensor, strength: float,
                    form: str = "attribution") -> objectives.Objective:
    """``-strength * sum_i w . sum_positions(g_i * d f_i / d g_i)`` over the jobs of one batch (a loss:
    minimized), ``f_i`` being job ``i``'s own value (its ``read``); with ``form="activation"``,
    the paper's weaker alternative ``-strength * sum_i w . mean_positions(g_i)``."""
    if form not in FACET_FORMS:
        raise ValueError(f"facet form {form!r}: allowed: {', '.join(FACET_FORMS)}")

    def loss(T) -> torch.Tensor:
        if form == "activation":
            return -strength * (T(layer).mean(dim=(2, 3)) @ weights.to(T(layer).device)).sum()
        values = sum(job.read(T(job.layer)[i:i + 1]).sum() for i, job in enumerate(jobs))
        grad = T.gradient(values, layer)
        if grad is None:
            raise ValueError(f"facet layer '{layer}' does not feed {', '.join(sorted({j.layer for j in jobs}))}: "
                             f"train the facet on a lower layer")
        attribution = (T(layer) * grad).sum(dim=(2, 3))  # [B, channels of g]
        return -strength * (attribution @ weights.to(attribution.device)).sum()

    return objectives.Objective(loss)


class FacetedVisualizer(ChannelVisualizer):
    name = "faceted"
    description = ("A unit seen through a facet (text, drawing, face ...): the channel objective plus the paper's "
                   "facet term w^T (g * grad f), w a facet probe from `mmneurons facet train`.")
    defaults: dict = {}  # the paper's full-frame settings, with which the facets were measured (issue 19)
    extra_params = (
        Param("facet", "str", "", help="facet file written by `mmneurons facet train` (required)"),
        Param("facet_weight", "float", DEFAULT_FACET_WEIGHT, min=0.0,
              help="weight of the facet term (1: about as large as the unit's own activation)"),
        Param("facet_negative", "bool", False,
              help="also steer away from the generic images (the probe's negative weights)"),
        Param("facet_form", "str", "attribution", choices=FACET_FORMS,
              help="attribution: w^T (g * grad f), the paper's; activation: w^T g, which the paper found worse"),
    )

    @staticmethod
    def facet(model: ClipModel, values: dict) -> Facet:
        if not values["facet"]:
            raise ValueError("visualizer 'faceted' needs a facet file: -p facet=FILE (train one with "
                             "`mmneurons facet train`)")
        facet = Facet.load(values["facet"])
        facet.check(model)
        return facet

    def jobs(self, model, targets, values):
        facet = self.facet(model, values)
        jobs = super().jobs(model, targets, values)
        for job in jobs:
            job.label = f"{job.label} [{facet.name}]"
        return jobs

    def layers_read(self, jobs: Sequence[Job], values: dict) -> set[str]:
        return super().layers_read(jobs, values) | {Facet.load(values["facet"]).layer}

    def spec(self, jobs: Sequence[Job], values: dict) -> RenderSpec:
        spec = super().spec(jobs, values)
        facet = Facet.load(values["facet"])
        weights = torch.as_tensor(facet.objective_weights(values["facet_negative"]))
        term = facet_objective(jobs, facet.layer, weights, values["facet_weight"], values["facet_form"])
        spec.extra_objective = term if spec.extra_objective is None else spec.extra_objective + term
        spec.extra_layers = (*spec.extra_layers, facet.layer)
        return spec
