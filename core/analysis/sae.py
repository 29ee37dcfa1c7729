"""Training an SAE on a layer by streaming an image source, and measuring it.

Samples are positions: every pixel of a ResNet map, every patch token of a ViT block (the layer's
canonical ``[B, C, H, W]`` grid). Each epoch visits the images in a seeded order, a batch of images
at a time; a batch's positions are shuffled with a generator seeded by (seed, epoch, batch) and cut
into SAE batches. A run can therefore stop after any batch of images and resume from its
checkpoint to exactly the weights an uninterrupted run reaches.

The loss is the reconstruction's squared error over the inputs' squared norm (both normalized),
plus the auxiliary loss of Gao et al. (2024) that keeps features alive: the features that fired
for none of the last ``dead_after`` positions reconstruct what the others missed, with their own
top ``aux_k``, at weight ``aux_weight``. The decoder's rows are renormalized after each step.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import torch

from ..capture import capture_layers, edited_layer
from ..images import iterate_batches
from ..kinds import Progress, no_progress
from ..sae import SAE, SAEError, SAEInfo
from .associations import _Subset
from .modality import modality_of

if TYPE_CHECKING:  # pragma: no cover
    from ..images import ImageSource
    from ..models import ClipModel
    from ..scan import ScanTower


@dataclass
class SAETraining:
    """How an SAE is trained (stored in its file)."""

    features: int
    k: int
    epochs: int = 4
    image_batch: int = 64
    batch_size: int = 1024
    lr: float = 4e-4
    seed: int = 0
    aux_k: int = 64
    aux_weight: float = 1 / 32
    dead_after: int = 100_000
    stat_images: int = 512
    precision: str = "auto"


def positions(model: "ClipModel", pixels: torch.Tensor, layer: str,
              tower: "ScanTower | None" = None) -> torch.Tensor:
    """``[B * H * W, C]``: every position of ``layer`` as a row of its channels (float32), read
    through ``tower`` (the scan's fast path and precision) when given, else the model itself."""
    if tower is not None:
        grid = tower.forward(pixels)[0][layer]
    else:
        with torch.inference_mode():
            grid = capture_layers(model, pixels, [layer])[layer]
    return grid.float().permute(0, 2, 3, 1).reshape(-1, grid.shape[1]).clone()


def _batches(model: "ClipModel", source: "ImageSource", layer: str, batch: int, start: int = 0,
             precision: str = "auto") -> Iterator[tuple[int, torch.Tensor]]:
    """Each batch of images' positions of ``layer``, read the way a scan reads them."""
    from ..scan import ScanTower

    tower = ScanTower(model, [layer], precision)
    n = -(-len(source) // batch)
    for number, loaded in zip(range(start, n), iterate_batches(source, model.image_size, batch_size=batch,
                                                               batches=range(start, n))):
        if len(loaded.indices):
            with tower.held():
                x = positions(model, loaded.pixels, layer, tower)
            yield number, x


def input_statistics(model: "ClipModel", source: "ImageSource", layer: str, images: int,
                     batch: int = 64, precision: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(per-channel mean, scale) over the first ``images`` images' positions: the scale makes the
    centered inputs' mean squared norm equal the channel count (unit variance per channel on average)."""
    total, squares, count = None, 0.0, 0
    part = _Subset(source, range(min(images, len(source))))
    rows = []
    for _, x in _batches(model, part, layer, batch, precision=precision):
        rows.append(x)
        total = x.sum(0) if total is None else total + x.sum(0)
        count += len(x)
    if not count:
        raise SAEError("no image of the source could be read")
    mean = total / count
    for x in rows:
        squares += float(((x - mean) ** 2).sum())
    scale = torch.tensor(max(np.sqrt(squares / count / mean.numel()), 1e-8), dtype=torch.float32)
    return mean, scale


def _step(sae: SAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, since_fired: torch.Tensor,
          cfg: SAETraining) -> float:
    xn = sae.normalized(x)
    pre = torch.relu((xn - sae.b_dec) @ sae.W_enc + sae.b_enc)
    top = pre.topk(cfg.k, dim=-1)
    codes = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
    recon = sae.decode_normalized(codes)
    norm = (xn ** 2).sum(-1).mean().clamp_min(1e-12)
    loss = ((recon - xn) ** 2).sum(-1).mean() / norm
    dead = since_fired >= cfg.dead_after
    if dead.any():
        residual = (xn - recon).detach()
        dead_pre = pre.masked_fill(~dead, 0.0)
        aux = dead_pre.topk(min(cfg.aux_k, int(dead.sum())), dim=-1)
        aux_codes = torch.zeros_like(pre).scatter(-1, aux.indices, aux.values)
        aux_recon = aux_codes @ sae.W_dec
        loss = loss + cfg.aux_weight * ((aux_recon - residual) ** 2).sum(-1).mean() / \
            (residual ** 2).sum(-1).mean().clamp_min(1e-12)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    sae.normalize_decoder()
    fired = (codes > 0).any(0)
    since_fired.add_(len(x))
    since_fired[fired] = 0
    return loss.item()


def _order(n: int, seed: int, epoch: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def train_sae(model: "ClipModel", source: "ImageSource", layer: str, cfg: SAETraining, *,
              checkpoint: "str | os.PathLike | None" = None, data: str = "", progress: Progress = no_progress,
              stop_after: int | None = None) -> SAE:
    """Train a TopK SAE on ``layer`` over ``source`` (see the module's docstring). With
    ``checkpoint``, the state is saved there after every batch of images and a run that finds it
    resumes from it; the file is removed when training ends. ``stop_after`` ends the run after that
    many batches of images (the tests' interruption; the checkpoint stays)."""
    channels = model.layer_info(layer).channels
    if cfg.features < 1 or cfg.k < 1 or cfg.k > cfg.features:
        raise SAEError(f"features={cfg.features}, k={cfg.k}: need 1 <= k <= features")
    info = SAEInfo(layer=layer, model_id=model.model_id, model_sha256=model.meta.get("sha256"),
                   features=cfg.features, k=cfg.k, channels=channels, data=data or source.describe(),
                   training=asdict(cfg))
    sae = SAE(info, seed=cfg.seed)
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    since_fired = torch.zeros(cfg.features, dtype=torch.long)
    epoch, start, losses = 0, 0, []
    path = Path(checkpoint) if checkpoint else None
    if path is not None and path.exists():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and numbers, no code
        except Exception as exc:  # noqa: BLE001 - any unreadable file: not ours, left as it is
            raise SAEError(f"{path} is not a checkpoint of SAE training ({type(exc).__name__}); it is left as "
                           f"it is: remove it or give another --work folder") from None
        same = (state.get("training"), state.get("layer"), state.get("model_id")) == (asdict(cfg), layer,
                                                                                       model.model_id)
        if not same:
            raise SAEError(f"checkpoint {path} is of another training run (other settings, layer or model); "
                           f"remove it or give another --work folder")
        sae.load_state_dict(state["sae"])
        optimizer.load_state_dict(state["optimizer"])
        since_fired, epoch, start, losses = state["since_fired"], state["epoch"], state["batch"], state["losses"]
    else:
        progress(0, 1, "input statistics")
        mean, scale = input_statistics(model, source, layer, cfg.stat_images, cfg.image_batch, cfg.precision)
        sae.mean.copy_(mean)
        sae.scale.copy_(scale)
    n_batches = -(-len(source) // cfg.image_batch)
    done_batches = 0
    while epoch < cfg.epochs:
        ordered = _Subset(source, _order(len(source), cfg.seed, epoch))
        for number, x in _batches(model, ordered, layer, cfg.image_batch, start, cfg.precision):
            g = torch.Generator().manual_seed((cfg.seed * 1_000_003 + epoch) * 100_003 + number)
            x = x[torch.randperm(len(x), generator=g)]
            for lo in range(0, len(x), cfg.batch_size):
                losses.append(_step(sae, optimizer, x[lo:lo + cfg.batch_size], since_fired, cfg))
            start = number + 1
            done_batches += 1
            progress(epoch * n_batches + start, cfg.epochs * n_batches,
                     f"SAE epoch {epoch + 1}/{cfg.epochs}, loss {np.mean(losses[-20:]):.4f}")
            if path is not None:
                _save_state(path, sae, optimizer, since_fired, epoch, start, losses, cfg, layer, model.model_id)
            if stop_after is not None and done_batches >= stop_after:
                return sae
        epoch, start = epoch + 1, 0
    sae.info.training = {**asdict(cfg), "steps": len(losses), "final_loss": float(np.mean(losses[-20:]))}
    if path is not None and path.exists():
        path.unlink()  # our own checkpoint, finished
    return sae.eval()


def _save_state(path: Path, sae: SAE, optimizer, since_fired, epoch, batch, losses, cfg, layer, model_id) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"sae": sae.state_dict(), "optimizer": optimizer.state_dict(), "since_fired": since_fired,
                "epoch": epoch, "batch": batch, "losses": list(losses), "training": asdict(cfg), "layer": layer,
                "model_id": model_id}, tmp)
    os.replace(tmp, path)


def feature_means(model: "ClipModel", sae: SAE, source: "ImageSource", *, batch: int = 64,
                  progress: Progress = no_progress) -> tuple[np.ndarray, list[int]]:
    """(``[N, F]`` each image's mean code of every feature over the layer's positions, the indices of
    the images read): an SAE feature's activation per image, as a unit's is its spatial mean."""
    from ..scan import ScanTower

    sae.check(model)
    tower = ScanTower(model, [sae.info.layer])
    rows, kept = [], []
    n = -(-len(source) // batch)
    with torch.no_grad():
        for i, loaded in enumerate(iterate_batches(source, model.image_size, batch_size=batch)):
            if len(loaded.indices):
                with tower.held():
                    x = positions(model, loaded.pixels, sae.info.layer, tower)
                codes = sae.encode(x).reshape(len(loaded.indices), -1, sae.info.features)
                rows.append(codes.mean(dim=1).numpy())
                kept += list(loaded.indices)
            progress(i + 1, n, "SAE features")
    if not rows:
        raise SAEError("no image of the source could be read")
    return np.concatenate(rows), kept


@dataclass
class SAEQuality:
    """How well an SAE stands in for its layer over some images."""

    fvu: float                      # fraction of variance unexplained
    l0: float                       # mean number of active features per position
    dead_fraction: float            # features active at no position
    positions: int
    accuracy: dict | None = None    # per group: {"model": acc, "reconstructed": acc}

    def as_dict(self) -> dict:
        return asdict(self)


def reconstruction_edit(sae: SAE) -> Callable[[torch.Tensor], torch.Tensor]:
    """An edit for :func:`~mmneurons.capture.edited_layer` that replaces the layer's output by the
    SAE's reconstruction at every position."""
    def edit(view: torch.Tensor) -> torch.Tensor:
        rows = view.movedim(1, -1)
        out = sae(rows.reshape(-1, rows.shape[-1]).float()).to(view.dtype)
        return out.reshape(rows.shape).movedim(-1, 1)
    return edit


def sae_quality(model: "ClipModel", sae: SAE, source: "ImageSource", *, labels: Sequence[str] | None = None,
                batch: int = 64, progress: Progress = no_progress) -> SAEQuality:
    """FVU, L0 and dead features over ``source``'s positions; with ``labels`` (the images'
    categories are the classes), zero-shot accuracy per image group (the demo's forms, else all)
    with the layer as it is and replaced by the reconstruction."""
    sae.check(model)
    layer = sae.info.layer
    err, total, squares, count, active, fired = 0.0, None, 0.0, 0, 0.0, torch.zeros(sae.info.features, dtype=torch.bool)
    n = -(-len(source) // batch)
    with torch.no_grad():
        for i, (_, x) in enumerate(_batches(model, source, layer, batch)):
            codes = sae.encode(x)
            recon = sae.decode(codes)
            err += float(((recon - x) ** 2).sum())
            total = x.sum(0) if total is None else total + x.sum(0)
            squares += float((x ** 2).sum())
            count += len(x)
            active += float((codes > 0).sum())
            fired |= (codes > 0).any(0)
            progress(i + 1, n, "SAE reconstruction")
    if not count:
        raise SAEError("no image of the source could be read")
    variance = squares - float((total ** 2).sum()) / count
    quality = SAEQuality(fvu=err / max(variance, 1e-12), l0=active / count,
                         dead_fraction=float((~fired).float().mean()), positions=count)
    if labels is not None:
        quality.accuracy = zero_shot_with_reconstruction(model, sae, source, labels, batch=batch)
    return quality


def zero_shot_with_reconstruction(model: "ClipModel", sae: SAE, source: "ImageSource", labels: Sequence[str], *,
                                  batch: int = 64) -> dict:
    """Zero-shot accuracy per image group (``meta['form']`` or the folder level; "all" too) with
    the layer as it is and replaced by the SAE's reconstruction."""
    classifier = model.zero_shot_classifier(list(labels))
    records = [source.record(i) for i in range(len(source))]
    truth = np.array([list(labels).index(r.category) if r.category in labels else -1 for r in records])
    groups = np.array([modality_of(r) or "all" for r in records])
    right = {"model": np.zeros(len(source), bool), "reconstructed": np.zeros(len(source), bool)}
    kept = np.zeros(len(source), bool)
    with torch.no_grad():
        for loaded in iterate_batches(source, model.image_size, batch_size=batch):
            if not len(loaded.indices):
                continue
            idx = np.asarray(loaded.indices)
            kept[idx] = True
            plain = model.zero_shot_logits(loaded.pixels, classifier).argmax(1).cpu().numpy()
            with edited_layer(model, sae.info.layer, reconstruction_edit(sae)):
                replaced = model.zero_shot_logits(loaded.pixels, classifier).argmax(1).cpu().numpy()
            right["model"][idx], right["reconstructed"][idx] = plain == truth[idx], replaced == truth[idx]
    out = {}
    for group in sorted(set(groups[kept])) + ["all"]:
        chosen = kept & (truth >= 0) & ((groups == group) if group != "all" else True)
        if chosen.any():
            out[str(group)] = {k: float(v[chosen].mean()) for k, v in right.items()}
    return out
