"""The analyses themselves, each written once: probes, app pages, the demo evaluation and (next)
the atlas call these functions, so a constant or a formula cannot drift between them."""

from .modality import concept_modality_table, max_z, modality_of, multimodality
from .prompts import neutral_image, prompt_gradient, text_direction
from .typographic import ATTACK_POSITIONS, AttackOutcome, attacked_pixels, typographic_attack
from .zero_shot import zero_shot_predictions, zero_shot_probabilities

__all__ = [
    "ATTACK_POSITIONS", "AttackOutcome", "attacked_pixels", "concept_modality_table", "max_z", "modality_of",
    "multimodality", "neutral_image", "prompt_gradient", "text_direction", "typographic_attack",
    "zero_shot_predictions", "zero_shot_probabilities",
]
