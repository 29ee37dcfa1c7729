"""``typographic_attack``: write a word on images and see whether zero-shot classification follows
the word. The paper's protocol: fixed positions over a set of images, success = the attacked image
is classified as the written word; reported with the fraction of pixels the text changed and the
units the text drives most."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmneurons.activations import layer_hooks, reduce_spatial
from mmneurons.images import ImageLoadError, parse_color, to_pil, write_text
from mmneurons.kinds import Probe, Progress, no_progress
from mmneurons.models import ClipModel
from mmneurons.params import Param, resolve_params
from mmneurons.results import ProbeResult


#: the 8 fixed positions (fractions of the image side), as in the paper's automated protocol
POSITIONS = ((0.2, 0.2), (0.5, 0.2), (0.8, 0.2), (0.2, 0.5), (0.8, 0.5), (0.2, 0.8), (0.5, 0.8), (0.8, 0.8))


class TypographicAttackProbe(Probe):
    name = "typographic_attack"
    description = "Write a word on images: zero-shot predictions before and after, success rate, pixels changed."
    targets = ("text",)
    params = (Param("labels", "str", help="comma-separated class labels; the attack word must be one of them"),
              Param("templates", "str", "", help="prompt templates separated by '|' (default: the model's)"),
              Param("size", "float", 0.2, min=0.02, max=1.0, help="font height as a fraction of the image"),
              Param("color", "str", "black", help="text color: a name, R,G,B"),
              Param("box", "str", "white", help="backing box color, or none"),
              Param("layer", "str", "auto", help="layer whose units the text drives ('auto': the last block)"),
              Param("top", "int", 10, min=1, help="units to list"))

    def run(self, model: ClipModel, target: Any, source: Any, params: dict | None = None,
            progress: Progress = no_progress) -> ProbeResult:
        values = resolve_params(self.params, params or {}, owner=f"probe '{self.name}'")
        word = str(target).strip()
        labels = [x.strip() for x in values["labels"].split(",") if x.strip()]
        if not word:
            raise ValueError("typographic attack: the attack text is empty")
        if word not in labels:
            raise ValueError(f"typographic attack: the attack word {word!r} must be one of the labels "
                             f"({', '.join(labels) or 'none given'}), so success can be measured")
        if source is None or len(source) == 0:
            raise ImageLoadError("typographic attack: give images to attack (--images or --source)")
        templates = [t for t in values["templates"].split("|") if t.strip()] or None
        color, box = parse_color(values["color"]), parse_color(values["box"])
        layer = model.resolve_layer(values["layer"])
        classifier = model.zero_shot_classifier(labels, templates)
        target_index = labels.index(word)
        clean_pred, attacked_pred, changed, drive, ids, skipped = [], [], [], 0.0, [], []
        examples, captions = [], []
        with torch.inference_mode(), model.lock:
            for i in range(len(source)):
                try:
                    image = source.load(i)
                except ImageLoadError as exc:
                    skipped.append(str(exc))
                    continue
                clean = model.pixels(image)
                attacked = torch.stack([model.pixels(write_text(to_pil(clean), word, p, size=values["size"],
                                                                color=color, box=box)) for p in POSITIONS])
                batch = torch.cat([clean[None], attacked]).to(model.device)
                with layer_hooks(model, [layer], stop=False) as store:  # one pass: layer and predictions
                    preds = (model.encode_image(batch) @ classifier).argmax(dim=1).cpu().numpy()
                acts = store[layer]
                clean_pred.append(int(preds[0]))
                attacked_pred.append(preds[1:])
                changed.append((attacked != clean[None]).any(dim=1).float().mean(dim=(1, 2)).numpy())
                means = reduce_spatial(acts, "mean").float().cpu()
                drive = drive + (means[1:] - means[:1]).mean(dim=0).numpy()
                ids.append(source.record(i).id)
                if len(examples) < 8:
                    examples.append(to_pil(attacked[i % len(POSITIONS)]))
                    captions.append(f"{ids[-1]}: {labels[preds[0]]} -> {labels[preds[1 + i % len(POSITIONS)]]}")
                progress(i + 1, len(source), f"attacking with {word!r}")
        if not ids:
            raise ImageLoadError(f"typographic attack: no image could be loaded ({len(skipped)} skipped)")
        attacked_pred = np.stack(attacked_pred)                     # [N, 8]
        clean_pred = np.array(clean_pred)
        not_already = clean_pred != target_index
        success = (attacked_pred == target_index)
        rate = float(success[not_already].mean()) if not_already.any() else float("nan")
        drive = drive / len(ids)
        order = np.argsort(-drive)[: values["top"]]
        per_image = [{"image": ids[n], "clean": labels[clean_pred[n]],
                      "attacked_as_word": float(success[n].mean()), "pixels_changed": float(changed[n].mean())}
                     for n in range(len(ids))]
        summary = {"word": word, "images": len(ids), "positions": len(POSITIONS), "success_rate": rate,
                   "success_rate_all_images": float(success.mean()),
                   "already_the_word": int((~not_already).sum()),
                   "pixels_changed": float(np.mean(changed)), "layer": layer, "skipped": len(skipped)}
        return ProbeResult(probe=self.name, model_id=model.model_id, target=word, summary=summary,
                           tables={"images": per_image,
                                   "units": [{"unit": f"{layer}:{int(c)}", "increase": float(drive[c])} for c in order]},
                           arrays={"attacked_predictions": attacked_pred, "clean_predictions": clean_pred,
                                   "unit_drive": drive},
                           images=examples, captions=captions, params=values,
                           warnings=[f"{len(skipped)} images could not be loaded"] if skipped else [])
