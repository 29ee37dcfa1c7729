"""The ``demo`` model provider (``demo:shapes``, shipped with the package and verified by sha256) and
the ``demo_shapes`` image source (the concept x form probe set). The ``mmneurons demo`` commands are
in :mod:`.commands`, the hooks in :mod:`mmneurons.plugins.hooks.demo`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mmneurons.kinds import ImageSourceFactory, ModelProvider
from mmneurons.models import ClipModel, ModelLoadError
from mmneurons.params import Param

from .data import FORMS, ShapesSource, attack_specs, probe_specs
from .tokenizer import WordTokenizer

from . import ASSETS, PROBE_SEED


def sha256(path: Path) -> str:
    from .train import sha256 as _sha

    return _sha(path)


class DemoProvider(ModelProvider):
    name = "demo"
    description = "The embedded demo CLIP, trained on synthetic shapes as photos, drawings and words (offline)."

    def __init__(self, assets: Path = ASSETS) -> None:
        self.assets = Path(assets)

    def manifests(self) -> dict[str, dict]:
        out = {}
        for path in sorted(self.assets.glob("*manifest.json")):
            doc = json.loads(path.read_text())
            out[doc["name"]] = {**doc, "_dir": str(path.parent)}
        return out

    def list_models(self) -> list[str]:
        return [f"demo:{name}" for name in self.manifests()]

    def load(self, spec: str, device: Any) -> ClipModel:
        manifests = self.manifests()
        if spec not in manifests:
            known = ", ".join(f"demo:{n}" for n in manifests) or "none (the package's demo assets are missing)"
            raise ModelLoadError(f"unknown demo model 'demo:{spec}'; demo models: {known}")
        manifest = manifests[spec]
        weights = Path(manifest["_dir"]) / manifest["weights"]["file"]
        if not weights.is_file():
            raise ModelLoadError(f"demo:{spec}: weights file {weights} is missing; reinstall mmneurons "
                                 f"or retrain with `mmneurons demo train`")
        digest = sha256(weights)
        if digest != manifest["weights"]["sha256"]:
            raise ModelLoadError(
                f"demo:{spec}: weights file {weights} failed its checksum (sha256 {digest[:12]}..., the manifest "
                f"says {manifest['weights']['sha256'][:12]}...): it was changed or corrupted. Reinstall mmneurons "
                f"or retrain with `mmneurons demo train`")
        from mmneurons.models import build_clip

        model = build_clip(manifest["model_cfg"])
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        pre = manifest["preprocess"]
        from .captions import TEMPLATES

        meta = {k: v for k, v in manifest.items() if k != "_dir"}
        meta["templates"] = list(TEMPLATES)
        meta["sha256"] = manifest["weights"]["sha256"]
        evaluation = manifest.get("evaluation", {})  # the multimodal units, most multimodal first
        multimodal = evaluation.get("multimodal", {})
        ranked = multimodal.get("ranked") or [c for c, _ in multimodal.get("units", [])]
        meta["featured_units"] = [f"{evaluation.get('layer')}:{c}" for c in ranked] if ranked else []
        meta["featured_plugins"] = ["channel", "modality"]  # what the app shows of them without a click
        # the SAEs shipped with the model (checked by sha256 when loaded: mmneurons.sae.shipped_sae)
        meta["saes"] = {layer: {"path": str(Path(manifest["_dir"]) / entry["file"]), "sha256": entry["sha256"]}
                        for layer, entry in manifest.get("saes", {}).items()}
        # the quick atlas the app builds on first start (about a minute on 2 CPU cores): every unit of the
        # layer with short visualizations; `mmneurons atlas build` makes the full one
        meta["atlas"] = {"layers": [evaluation.get("layer") or "layer4.0"], "source": "demo_shapes", "k": 8,
                         "vis_params": {"steps": 32}, "vis_batch": 128,
                         "probe_params": {"rendered_words": {"n_words": 2000}}}
        return ClipModel(model, WordTokenizer.from_dict(manifest["tokenizer"]), model_id=f"demo:{spec}",
                         image_size=pre["size"], mean=pre["mean"], std=pre["std"], device=device, meta=meta)


class DemoShapesSource(ImageSourceFactory):
    name = "demo_shapes"
    description = ("The concept x form probe set: 12 shapes as photo, drawing and text (category = concept, "
                   "meta['form'] = form), or typographic attack images.")
    params = (
        Param("per_cell", "int", 10, min=1, max=1000, help="images per (concept, form)"),
        Param("forms", "str", "all", choices=("all",) + FORMS + ("attack",),
              help="which forms (attack: photos with another concept's word written on them)"),
        Param("seed", "int", PROBE_SEED, min=0, help="random seed of the generator"),
        Param("size", "int", 64, min=16, max=512, help="image side in pixels"),
    )

    def create(self, per_cell: int = 10, forms: str = "all", seed: int = PROBE_SEED, size: int = 64) -> ShapesSource:
        if forms == "attack":
            specs = attack_specs(per_cell, seed)
        else:
            specs = probe_specs(per_cell, seed, FORMS if forms == "all" else (forms,))
        return ShapesSource(specs, size, name=f"demo shapes ({forms})")
