"""Model provider ``openclip``: any open_clip architecture with a pretrained tag or a local checkpoint.

Ids:
    ``openclip:RN50x4@openai``                 a pretrained tag (downloaded once, then cached)
    ``openclip:RN50x4@random``                 the architecture with random weights (benchmarks)
    ``openclip:RN50@/path/weights.pt``         an architecture with weights from a local file
    ``openclip:/path/ckpt.pt``                 a self-describing checkpoint saved by :func:`save_checkpoint`

Offline, a missing download fails at once with the model, the tag and the cache location, not
after a minute of retries.
"""

from __future__ import annotations

import difflib
import logging
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from mmneurons.kinds import ModelProvider
from mmneurons.models import DEFAULT_MODEL_ID, ClipModel, ModelLoadError, build_clip

RANDOM_TAGS = ("random", "none")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def _open_clip():
    import open_clip

    return open_clip


def offline_forced() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("MMNEURONS_OFFLINE", "HF_HUB_OFFLINE"))


def _hf_cache_dir(cache_dir: str | None) -> str:
    if cache_dir:
        return cache_dir
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def weights_location(cfg: dict, cache_dir: str | None = None) -> tuple[str | None, str, str]:
    """(cached file or None, cache folder, download host) for an open_clip pretrained config."""
    oc = _open_clip()
    if cfg.get("file"):
        return (cfg["file"] if os.path.isfile(cfg["file"]) else None), os.path.dirname(cfg["file"]), ""
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import constants, try_to_load_from_cache

        repo, filename = os.path.split(hub)
        names = [filename] if filename else [oc.constants.HF_SAFE_WEIGHTS_NAME, oc.constants.HF_WEIGHTS_NAME]
        folder = _hf_cache_dir(cache_dir)
        for name in names:
            hit = try_to_load_from_cache(repo, name, cache_dir=folder)
            if isinstance(hit, str):
                return hit, folder, urlparse(constants.ENDPOINT).hostname or ""
        return None, folder, urlparse(constants.ENDPOINT).hostname or ""
    url = cfg.get("url", "")
    folder = cache_dir or os.path.expanduser("~/.cache/clip")
    target = os.path.join(folder, os.path.basename(url))
    return (target if os.path.isfile(target) else None), folder, urlparse(url).hostname or ""


def host_reachable(host: str, timeout: float = 3.0) -> bool:
    if not host or offline_forced():
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, *, model_cfg: dict,
                    preprocess: dict | None = None) -> Path:
    """Save an open_clip model with its config, so ``openclip:/path`` can rebuild it alone."""
    path = Path(path)
    oc = _open_clip()
    preprocess = preprocess or {"size": model.visual.image_size,
                                "mean": list(oc.OPENAI_DATASET_MEAN), "std": list(oc.OPENAI_DATASET_STD)}
    size = preprocess["size"]
    preprocess = {**preprocess, "size": list(size) if isinstance(size, (tuple, list)) else size}
    torch.save({"model_cfg": model_cfg, "preprocess": preprocess, "state_dict": model.state_dict()}, path)
    return path


class OpenClipProvider(ModelProvider):
    name = "openclip"
    description = "Any open_clip model: a pretrained tag, random weights, or a local checkpoint."

    def list_models(self) -> list[str]:
        return [f"openclip:{name}@{tag}" for name, tag in _open_clip().list_pretrained()]

    def load(self, spec: str, device: Any) -> ClipModel:
        model_id = f"openclip:{spec}"
        name, _, tag = spec.partition("@")
        if not tag and (spec.endswith(CHECKPOINT_SUFFIXES) or os.sep in spec):
            return self._load_checkpoint(Path(spec), model_id, device)
        name = self._check_name(name, model_id)
        if not tag:
            tags = _open_clip().list_pretrained_tags_by_model(name)
            raise ModelLoadError(f"{model_id}: name the weights, e.g. {name}@{tags[0] if tags else 'random'}"
                                 f" (tags: {', '.join(tags + ['random'])}, or @/path/to/weights.pt)")
        if tag.lower() in RANDOM_TAGS:
            return self._create(name, None, model_id, device)
        if os.path.isfile(tag):
            return self._create(name, tag, model_id, device)
        if tag.endswith(CHECKPOINT_SUFFIXES) or os.sep in tag:
            raise ModelLoadError(f"{model_id}: checkpoint file {tag} does not exist")
        cfg = _open_clip().get_pretrained_cfg(name, tag)
        if not cfg:
            tags = _open_clip().list_pretrained_tags_by_model(name)
            raise ModelLoadError(f"{model_id}: unknown pretrained tag '{tag}' for {name}; "
                                 f"tags: {', '.join(tags + ['random'])}")
        cached, folder, host = weights_location(cfg)
        if cached is None and not host_reachable(host):
            raise ModelLoadError(
                f"cannot load {model_id}: the weights for model '{name}' tag '{tag}' are not in the local "
                f"cache ({folder}) and cannot be downloaded (offline, or {host or 'the host'} unreachable). "
                f"Put the weights in that cache, load a local file with openclip:{name}@/path/to/weights.pt, "
                f"or use the embedded offline model: {DEFAULT_MODEL_ID}")
        return self._create(name, tag, model_id, device)

    def _check_name(self, name: str, model_id: str) -> str:
        names = _open_clip().list_models()
        if name in names:
            return name
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ModelLoadError(f"{model_id}: unknown open_clip model '{name}'; {hint}"
                             f"see `mmneurons models` for the list")

    def _create(self, name: str, pretrained: str | None, model_id: str, device: Any) -> ClipModel:
        oc = _open_clip()
        root = logging.getLogger()
        level = root.level
        if pretrained is None:  # random weights were asked for: open_clip's warning is noise
            root.setLevel(logging.ERROR)
        try:
            model = oc.create_model(name, pretrained=pretrained, device="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - open_clip raises RuntimeError/HTTP errors/...
            raise ModelLoadError(f"cannot load {model_id}: {type(exc).__name__}: {exc}") from exc
        finally:
            root.setLevel(level)
        return self._wrap(model, oc.get_tokenizer(name), model_id, device, {"architecture": name})

    def _load_checkpoint(self, path: Path, model_id: str, device: Any) -> ClipModel:
        if not path.is_file():
            raise ModelLoadError(f"{model_id}: checkpoint file {path} does not exist")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - pickles with code in them are refused here
            raise ModelLoadError(f"{model_id}: cannot read {path} as a weights-only checkpoint: {exc}") from exc
        if not isinstance(ckpt, dict) or "model_cfg" not in ckpt or "state_dict" not in ckpt:
            raise ModelLoadError(f"{model_id}: {path} holds no model config; name the architecture: "
                                 f"openclip:MODEL@{path} (e.g. openclip:RN50@{path})")
        stored = sum(v.numel() for v in ckpt["state_dict"].values() if isinstance(v, torch.Tensor))
        try:
            with torch.device("meta"):  # the config's size, with no memory allocated
                planned = sum(p.numel() for p in build_clip(ckpt["model_cfg"]).parameters())
        except Exception as exc:  # noqa: BLE001 - a config open_clip cannot build
            raise ModelLoadError(f"{model_id}: the model config in {path} cannot be built: "
                                 f"{type(exc).__name__}: {exc}") from None
        if planned > stored:  # weights missing for it: often a config claiming an impossible model
            raise ModelLoadError(f"{model_id}: the config in {path} describes {planned:,} parameters "
                                 f"({planned * 4 / 2**30:,.1f} GiB in float32) but the file holds {stored:,}: "
                                 f"the config does not belong to these weights")
        model = build_clip(ckpt["model_cfg"])
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            raise ModelLoadError(f"{model_id}: weights do not match the config in {path}: {exc}") from exc
        pre = ckpt.get("preprocess") or {}
        tokenizer = _open_clip().SimpleTokenizer(context_length=ckpt["model_cfg"]["text_cfg"].get("context_length", 77))
        return self._wrap(model, tokenizer, model_id, device, {"checkpoint": str(path)}, pre)

    @staticmethod
    def _wrap(model, tokenizer, model_id, device, meta, preprocess: dict | None = None) -> ClipModel:
        oc = _open_clip()
        pre = preprocess or oc.get_model_preprocess_cfg(model)
        size = pre.get("size", model.visual.image_size)
        size = size[0] if isinstance(size, (tuple, list)) else size
        return ClipModel(model, tokenizer, model_id=model_id, image_size=size,
                         mean=pre.get("mean", oc.OPENAI_DATASET_MEAN), std=pre.get("std", oc.OPENAI_DATASET_STD),
                         device=device, meta=meta)
