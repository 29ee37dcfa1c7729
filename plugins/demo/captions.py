"""Captions for the synthetic images, written the way web captions are.

About half of the captions name the concept without its form ("a star"), as web captions do;
that shared wording is what lets units respond to a concept across forms. Signs (a photo of one
concept with another concept's word on it) are captioned by the written word, as photos of signs
and labels are on the web; that is what makes the model read text, typographic attacks included.
"""

from __future__ import annotations

import numpy as np

from .data import CONCEPTS, Spec

BARE = ("a {}", "{}", "the {}", "a {} shape")
BY_FORM = {
    "photo": ("a photo of a {}", "a picture of a {}", "a photo of the {}"),
    "drawing": ("a drawing of a {}", "a sketch of a {}", "a line drawing of a {}"),
    "text": ("the word {}", "text that says {}", "the text {}", "written {}"),
}
SIGN = ("{}", "the word {}", "a sign that says {}", "a label that says {}")
BARE_FRACTION = 0.5
#: zero-shot prompts used by every evaluation (an ensemble, as CLIP's zero-shot classifiers are)
TEMPLATES = ("a {}", "a photo of a {}", "a drawing of a {}", "the word {}")
EXTRA_WORDS = ("an", "image", "of", "shape", "symbol", "icon", "picture", "photo", "drawing", "word")


def caption(spec: Spec, rng: np.random.Generator) -> str:
    if spec.kind == "sign":
        return SIGN[rng.integers(len(SIGN))].format(spec.word)
    if rng.random() < BARE_FRACTION:
        return BARE[rng.integers(len(BARE))].format(spec.concept)
    options = BY_FORM[spec.kind]
    return options[rng.integers(len(options))].format(spec.concept)


def vocabulary() -> list[str]:
    words = set(CONCEPTS) | set(EXTRA_WORDS)
    for group in (BARE, SIGN, TEMPLATES, *BY_FORM.values()):
        for template in group:
            words |= set(template.replace("{}", " ").split())
    return sorted(words)
