"""``typographic_attack``: the paper's protocol (:func:`mmneurons.analysis.typographic_attack`) over
an image source: zero-shot predictions before and after writing a word at 8 fixed positions,
success rate, pixels changed, and the units the text drives most."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmneurons.analysis import typographic_attack
from mmneurons.images import ImageLoadError, parse_color
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param
from mmneurons.results import ProbeResult


class TypographicAttackProbe(Probe):
    name = "typographic_attack"
    description = "Write a word on images: zero-shot predictions before and after, success rate, pixels changed."
    targets = ("text",)
    params = (Param("labels", "str", help="comma-separated class labels; the attack word must be one of them",
                    default_from="categories"),
              Param("templates", "str", "", help="prompt templates separated by '|' (default: the model's)"),
              Param("size", "float", 0.2, min=0.02, max=1.0, help="font height as a fraction of the image"),
              Param("color", "str", "black", help="text color: a name, R,G,B"),
              Param("box", "str", "white", help="backing box color, or none"),
              Param("layer", "str", "auto", help="layer whose units the text drives ('auto': the last block)"),
              Param("top", "int", 10, min=1, help="units to list"))

    def compute(self, model: ClipModel, word: Any, source: Any, values: dict,
                progress: Progress = no_progress) -> ProbeResult:
        word = str(word)
        labels = [x.strip() for x in values["labels"].split(",") if x.strip()]
        if not word:
            raise ValueError("typographic attack: the attack text is empty")
        if source is None or len(source) == 0:
            raise ImageLoadError("typographic attack: give images to attack (--images or --source)")
        templates = [t for t in values["templates"].split("|") if t.strip()] or None
        layer = model.resolve_layer(values["layer"])
        out = typographic_attack(model, source, word, labels, templates, size=values["size"],
                                 color=parse_color(values["color"]), box=parse_color(values["box"]), layer=layer,
                                 examples=8, progress=progress)
        success = out.success
        drive = out.unit_drive
        order = np.argsort(-drive)[: values["top"]]
        per_image = [{"image": image_id, "clean": labels[out.clean[n]], "attacked_as_word": float(success[n].mean()),
                      "pixels_changed": float(out.pixels_changed[n].mean())} for n, image_id in enumerate(out.ids)]
        summary = {"word": word, "images": len(out.ids), "positions": len(out.positions),
                   "success_rate": out.success_rate(), "success_rate_all_images": float(success.mean()),
                   "already_the_word": int(out.already_the_word.sum()),
                   "pixels_changed": float(out.pixels_changed.mean()), "layer": layer, "skipped": len(out.skipped)}
        units = [{"unit": f"{layer}:{int(c)}", "increase": float(drive[c])} for c in order]
        return ProbeResult(probe=self.name, model_id=model.model_id, target=word, summary=summary,
                           tables={"images": per_image, "units": units},
                           arrays={"attacked_predictions": out.attacked, "clean_predictions": out.clean,
                                   "unit_drive": drive},
                           images=out.examples, captions=out.captions, params=values,
                           warnings=[f"{len(out.skipped)} images could not be loaded"] if out.skipped else [])
