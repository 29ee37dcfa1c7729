"""The analyses themselves, each written once: probes, app pages, the demo evaluation and the atlas
call these functions, so a constant or a formula cannot drift between them."""

from .ablation import AblationOutcome, ablate_units, ablation_sweep
from .decomposition import Decomposition, decompose_concept, decomposition_context, nonnegative_pursuit
from .facets import Facet, FacetError, train_facet
from .labels import LABEL_METHODS, UnitLabels, concept_correlation, concept_probabilities, label_units, soft_wpmi
from .modality import (concept_modality_table, concept_z, max_z, modality_of, multimodality,
                       units_for_concept)
from .prompts import neutral_image, prompt_gradient, text_direction
from .render_check import PathBaseline, PathScore, check_against_source, path_scores
from .typographic import ATTACK_POSITIONS, AttackOutcome, attacked_pixels, typographic_attack
from .zero_shot import zero_shot_predictions, zero_shot_probabilities

__all__ = [
    "ATTACK_POSITIONS", "AblationOutcome", "AttackOutcome", "Decomposition", "Facet", "FacetError", "LABEL_METHODS",
    "PathBaseline", "PathScore", "UnitLabels", "check_against_source", "path_scores",
    "ablate_units", "ablation_sweep", "attacked_pixels", "concept_correlation",
    "concept_modality_table", "concept_probabilities", "concept_z", "decompose_concept", "decomposition_context",
    "label_units", "max_z", "modality_of", "multimodality", "neutral_image", "nonnegative_pursuit",
    "prompt_gradient", "soft_wpmi", "text_direction", "train_facet", "typographic_attack", "units_for_concept",
    "zero_shot_predictions", "zero_shot_probabilities",
]
