"""Train the demo CLIP: a small ModifiedResNet (the RN50x4 structure: layers [1,1,1,1], width 16,
64 px, attention pool) and a small text transformer, with open_clip's contrastive loss.

Deterministic in the seed on a given machine and thread count. Progress is saved every
``checkpoint_every`` steps (atomically), and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mmneurons.kinds import Progress, no_progress

from .captions import BARE_FRACTION, caption, vocabulary
from .data import CONCEPTS, DATA_VERSION, FONTS, KIND_WEIGHTS, KINDS, render, training_specs
from .tokenizer import WordTokenizer

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


@dataclass
class TrainConfig:
    seed: int = 0
    images: int = 48_000
    steps: int = 1800
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup: int = 100
    image_size: int = 64
    width: int = 16
    embed_dim: int = 64
    text_width: int = 64
    text_layers: int = 2
    context_length: int = 12
    threads: int = 2
    checkpoint_every: int = 200

    def model_cfg(self, vocab_size: int) -> dict:
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {"layers": [1, 1, 1, 1], "width": self.width, "image_size": self.image_size},
            "text_cfg": {"context_length": self.context_length, "vocab_size": vocab_size,
                         "width": self.text_width, "heads": 4, "layers": self.text_layers},
        }


def _render_chunk(args):
    specs, size = args
    return np.stack([np.asarray(render(s, size)) for s in specs])


def generate(specs, size: int, progress: Progress = no_progress, workers: int = 2) -> torch.Tensor:
    """Render ``specs`` into a uint8 tensor ``[N, size, size, 3]`` with a process pool."""
    chunks = [specs[i:i + 500] for i in range(0, len(specs), 500)]
    out = []
    done = 0
    with get_context("spawn").Pool(max(1, workers)) as pool:
        for arr in pool.imap(_render_chunk, [(c, size) for c in chunks]):
            out.append(torch.from_numpy(arr))
            done += len(arr)
            progress(done, len(specs), "rendering training images")
    return torch.cat(out)


def build(cfg: TrainConfig, tokenizer: WordTokenizer):
    from mmneurons.models import build_clip

    torch.manual_seed(cfg.seed)
    return build_clip(cfg.model_cfg(tokenizer.vocab_size))


@lru_cache(maxsize=2)
def _epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batch_indices(step: int, cfg: TrainConfig) -> torch.Tensor:
    """The images of training step ``step``: a pure function of (seed, step), so resuming is exact."""
    flat = torch.arange(step * cfg.batch_size, (step + 1) * cfg.batch_size)
    epochs, positions = flat // cfg.images, flat % cfg.images
    return torch.stack([_epoch_order(cfg.seed, int(e), cfg.images)[int(p)] for e, p in zip(epochs, positions)])


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def default_work_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mmneurons" / "demo-train"


def train(cfg: TrainConfig, out: Path, progress: Progress = no_progress,
          log: Callable[[str], None] = print, work: Path | None = None) -> Path:
    """Train and write ``out/shapes.pt`` (fp16) and ``out/manifest.json``; returns the manifest path.

    ``work`` holds the rendered training images and the resumable training state.
    """
    import open_clip

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(work) if work is not None else default_work_dir()
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    tokenizer = WordTokenizer(vocabulary(), cfg.context_length)
    specs = training_specs(cfg.images, cfg.seed)
    cache = work / f"images-v{DATA_VERSION}-{cfg.seed}-{cfg.images}-{cfg.image_size}.pt"
    if cache.exists():
        images = torch.load(cache, weights_only=True)
    else:
        images = generate(specs, cfg.image_size, progress)
        _atomic_save(images, cache)
    model = build(cfg, tokenizer)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = open_clip.ClipLoss()
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    state_path = work / f"state-{cfg.seed}.pt"
    step, losses = 0, []
    if state_path.exists():
        state = torch.load(state_path, weights_only=True)  # tensors, numbers, lists: nothing that runs
        if state["config"] == asdict(cfg):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            step, losses = state["step"], state["losses"]
            log(f"resuming at step {step}")
    model.train()
    start = time.time()
    while step < cfg.steps:
        idx = batch_indices(step, cfg)
        rng = np.random.default_rng([cfg.seed, step])
        texts = [caption(specs[i], rng) for i in idx.tolist()]
        pixels = images[idx].permute(0, 3, 1, 2).float().div(255)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        img_f, txt_f, scale = model((pixels - mean) / std, tokenizer(texts))
        loss = loss_fn(img_f, txt_f, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        step += 1
        progress(step, cfg.steps, f"loss {np.mean(losses[-50:]):.3f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _atomic_save({"config": asdict(cfg), "model": model.state_dict(), "opt": opt.state_dict(),
                          "step": step, "losses": losses}, state_path)
    model.eval()
    minutes = (time.time() - start) / 60
    weights = out / "shapes.pt"
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    _atomic_save(half, weights)
    manifest = {
        "name": "shapes",
        "description": "A small CLIP (ModifiedResNet [1,1,1,1] width 16, 64 px) trained on synthetic "
                       "shape concepts as photos, drawings and words.",
        "model_cfg": cfg.model_cfg(tokenizer.vocab_size),
        "tokenizer": tokenizer.to_dict(),
        "preprocess": {"size": cfg.image_size, "mean": list(MEAN), "std": list(STD)},
        "data": {"generator": "mmneurons.plugins.demo.data", "version": DATA_VERSION, "concepts": list(CONCEPTS),
                 "kinds": list(KINDS),
                 "kind_weights": list(KIND_WEIGHTS), "bare_caption_fraction": BARE_FRACTION,
                 "fonts": list(FONTS), "images": cfg.images, "seed": cfg.seed},
        "train": {**asdict(cfg), "final_loss": float(np.mean(losses[-50:])),
                  "minutes_this_run": round(minutes, 2), "torch": torch.__version__},
        "weights": {"file": weights.name, "sha256": sha256(weights), "dtype": "float16"},
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
