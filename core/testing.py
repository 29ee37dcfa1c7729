"""Tiny CLIP models for tests and examples (built in well under a second, no download).

open_clip zeroes every ResNet bottleneck's ``bn3.weight``, so at random init each residual
branch is dead and every block is an identity; :func:`revive_residual_branches` gives them life
with a fixed seed, so units respond differently to different images.
"""

from __future__ import annotations

import torch
from torch import nn

from .models import ClipModel, build_clip

TINY_TEXT_CFG = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2}
TINY_CONFIGS = {
    "resnet": {"embed_dim": 32, "vision_cfg": {"layers": [1, 1, 1, 1], "width": 16, "image_size": 64,
                                               "head_width": 16}, "text_cfg": TINY_TEXT_CFG},
    "vit": {"embed_dim": 32, "vision_cfg": {"layers": 2, "width": 32, "patch_size": 16, "image_size": 64,
                                            "head_width": 16}, "text_cfg": TINY_TEXT_CFG},
}


def revive_residual_branches(model: nn.Module, seed: int = 0) -> None:
    """Give every ResNet bottleneck's last batch norm a non-zero scale (fixed seed)."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        bn3 = getattr(module, "bn3", None)
        if isinstance(bn3, nn.BatchNorm2d):
            with torch.no_grad():
                bn3.weight.copy_(1.0 + 0.25 * torch.randn(bn3.weight.shape, generator=gen))


def tiny_clip(kind: str = "resnet", seed: int = 0, device: str = "cpu") -> ClipModel:
    """A tiny random open_clip CLIP (``resnet``: ModifiedResNet [1,1,1,1] width 16, 64 px;
    ``vit``: 2 blocks, width 32, 4x4 patches) wrapped as a :class:`ClipModel`."""
    import open_clip

    torch.manual_seed(seed)
    model = build_clip(TINY_CONFIGS[kind])
    revive_residual_branches(model, seed)
    tokenizer = open_clip.SimpleTokenizer(context_length=TINY_TEXT_CFG["context_length"])
    return ClipModel(model, tokenizer, model_id=f"tiny:{kind}", image_size=64,
                     mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD, device=device,
                     meta={"config": TINY_CONFIGS[kind]})
