"""An independent judge of feature visualizations of the demo model: a small shape classifier that
never saw the demo model's training images nor any render.

It learns the 12 concepts of ``demo:shapes`` from a generator of its own: the shapes are defined
anew (other proportions, orientations and a different heart, moon, arrow and spiral), drawn filled,
as outlines, as several small copies (a texture, as renders often are), cropped by the frame, or
written in fonts the demo never uses, on backgrounds of its own (smooth fields, colored
Fourier noise like an unoptimized render), then blurred, noised, color-shuffled or inverted. Its
held-out accuracy is reported per form, and on the demo's own probe images as a transfer check.

    uv run python bench/shape_judge.py          # train (or load) and print held-out accuracy

The weights are cached under ``~/.cache/mmneurons/bench`` keyed by the generator's version and
the training settings, so the quality benchmark trains it once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch import nn

from mmneurons.images import font
from mmneurons.plugins.demo.data import CONCEPTS

VERSION = 1
FORMS = ("filled", "outline", "copies", "cropped", "text")
#: fonts of matplotlib that the demo's generator never uses (neither for training nor evaluation)
FONTS = ("DejaVuSans-BoldOblique.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
         "DejaVuSerif-BoldItalic.ttf", "DejaVuSerifDisplay.ttf", "STIXGeneralBolIta.ttf", "cmb10.ttf", "cmti10.ttf")
SIZE, BIG = 64, 128


# -- the shapes, defined anew: polygons in [-1, 1], each with random proportions --------------------
def _poly(rng: np.random.Generator, concept: str) -> list[tuple[np.ndarray, str]]:
    t = lambda n: np.linspace(0, 2 * np.pi, n, endpoint=False)  # noqa: E731
    if concept == "circle":
        a = rng.uniform(0.88, 1.12)
        return [(np.stack([a * np.cos(t(64)), np.sin(t(64)) / a], 1), "fill")]
    if concept == "square":
        a = rng.uniform(0.85, 1.15)
        return [(np.array([(-a, -1 / a), (a, -1 / a), (a, 1 / a), (-a, 1 / a)]) * 0.85, "fill")]
    if concept == "triangle":
        p = np.stack([np.cos(t(3) - np.pi / 2), np.sin(t(3) - np.pi / 2)], 1) + rng.normal(0, 0.05, (3, 2))
        return [(p + [0, 0.15], "fill")]
    if concept == "star":
        n = 5
        r = np.where(np.arange(2 * n) % 2 == 0, 1.0, rng.uniform(0.35, 0.55))
        a = t(2 * n) - np.pi / 2
        return [(np.stack([r * np.cos(a), r * np.sin(a)], 1), "fill")]
    if concept == "heart":  # two lobes and a point
        s = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        w = rng.uniform(0.9, 1.1)
        x = 16 * np.sin(s) ** 3 / 16 * w
        y = -(12 * np.cos(s) - 4.5 * np.cos(2 * s) - 2.2 * np.cos(3 * s) - 0.8 * np.cos(4 * s)) / 15 + 0.15
        return [(np.stack([x, y], 1), "fill")]
    if concept == "cross":
        w = rng.uniform(0.22, 0.42)
        return [(np.array([(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w),
                           (-1, w), (-1, -w), (-w, -w)]), "fill")]
    if concept == "arrow":
        s, h, neck = rng.uniform(0.15, 0.3), rng.uniform(0.5, 0.8), rng.uniform(-0.1, 0.35)
        p = np.array([(-1, -s), (neck, -s), (neck, -h), (1, 0), (neck, h), (neck, s), (-1, s)])
        return [(p * ([1, -1][int(rng.integers(2))], 1), "fill")]
    if concept == "moon":
        d, r2 = rng.uniform(0.35, 0.6), rng.uniform(0.75, 0.95)
        a = rng.uniform(0, 2 * np.pi)
        c = d * np.array([np.cos(a), np.sin(a)])
        ring = np.stack([np.cos(t(180)), np.sin(t(180))], 1)
        return [(ring, "fill"), (c + r2 * ring, "hole_clip")]
    if concept == "ring":
        h = rng.uniform(0.45, 0.72)
        ring = np.stack([np.cos(t(64)), np.sin(t(64))], 1)
        return [(ring, "fill"), (ring * h, "hole")]
    if concept == "diamond":
        a = rng.uniform(0.55, 0.78)
        return [(np.array([(0, -1), (a, 0), (0, 1), (-a, 0)]), "fill")]
    if concept == "hexagon":
        a = t(6) + rng.uniform(-0.2, 0.2)
        return [(np.stack([np.cos(a), np.sin(a)], 1), "fill")]
    if concept == "spiral":
        turns = rng.uniform(2.0, 3.5)
        s = np.linspace(0.2, turns * 2 * np.pi, 200)
        r = s / s.max()
        sign = [1, -1][int(rng.integers(2))]
        return [(np.stack([r * np.cos(sign * s), r * np.sin(sign * s)], 1), "stroke")]
    raise ValueError(concept)


def _mask(rng, concept, center, radius, angle, outline: float = 0.0) -> Image.Image:
    """A BIGxBIG mask of one instance; ``outline`` > 0 keeps only its edge, about that many pixels wide."""
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    mask = Image.new("L", (BIG, BIG), 0)
    draw = ImageDraw.Draw(mask)
    stroke = max(2, int(radius * rng.uniform(0.15, 0.3)))
    for pts, role in _poly(rng, concept):
        xy = [tuple(p) for p in (pts @ rot.T) * radius + center]
        if role == "stroke":
            draw.line(xy, fill=255, width=max(2, int(outline)) if outline else stroke, joint="curve")
            return mask
        draw.polygon(xy, fill=255 if role == "fill" else 0)
    if outline:
        k = 2 * max(1, int(outline / 2)) + 1
        mask = Image.fromarray(np.asarray(mask.filter(ImageFilter.MaxFilter(k)), np.int16).__sub__(
            np.asarray(mask.filter(ImageFilter.MinFilter(k)), np.int16)).clip(0, 255).astype(np.uint8))
    return mask


# -- backgrounds and fills ----------------------------------------------------------------------------
def _smooth(rng, cells: int) -> np.ndarray:
    small = rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((BIG, BIG), Image.Resampling.BICUBIC), float)


def _fourier_noise(rng, decay: float) -> np.ndarray:
    fy = np.fft.fftfreq(BIG)[:, None]
    fx = np.fft.rfftfreq(BIG)[None, :]
    amp = 1 / np.maximum(np.sqrt(fx ** 2 + fy ** 2), 1 / BIG) ** decay
    spec = (rng.normal(size=(3,) + amp.shape) + 1j * rng.normal(size=(3,) + amp.shape)) * amp
    img = np.fft.irfft2(spec, s=(BIG, BIG)).transpose(1, 2, 0)
    img = (img - img.mean()) / (img.std() + 1e-8)
    return np.clip(128 + 50 * img, 0, 255)


def _background(rng) -> np.ndarray:
    kind = rng.integers(4)
    if kind == 0:
        return np.ones((BIG, BIG, 3)) * rng.uniform(0, 255, 3)
    if kind == 1:
        return _smooth(rng, int(rng.integers(2, 6)))
    if kind == 2:
        return _fourier_noise(rng, rng.uniform(0.8, 1.6))
    return np.clip(_smooth(rng, 3) * 0.6 + _fourier_noise(rng, 1.2) * 0.4, 0, 255)


def _fill(rng, bg: np.ndarray) -> np.ndarray:
    for _ in range(20):
        color = rng.uniform(0, 255, 3)
        if abs(color.mean() - bg.mean()) > 40:
            break
    kind = rng.integers(3)
    if kind == 0:
        return np.ones((BIG, BIG, 3)) * color
    if kind == 1:
        return np.clip(color + (_smooth(rng, 3) - 128) * 0.5, 0, 255)
    return np.clip(color + (_fourier_noise(rng, 1.0) - 128) * 0.5, 0, 255)


def _compose(bg, fill, mask) -> np.ndarray:
    m = np.asarray(mask, float)[..., None] / 255
    return bg * (1 - m) + fill * m


# -- the forms ---------------------------------------------------------------------------------------
def draw(rng: np.random.Generator, concept: str, form: str) -> Image.Image:
    """One 64 px judge image of ``concept`` in ``form`` (one of FORMS)."""
    bg = _background(rng)
    angle = math.radians(rng.uniform(-25, 25))
    if form == "text":
        img = Image.fromarray(bg.astype(np.uint8))
        word = [concept, concept.upper(), concept.title()][int(rng.integers(3))]
        f = font(FONTS[int(rng.integers(len(FONTS)))], int(rng.uniform(16, 34)))
        box = f.getbbox(word)
        layer = Image.new("RGBA", (box[2] - box[0] + 8, box[3] - box[1] + 8), (0, 0, 0, 0))
        dark = bg.mean() > 128
        color = tuple(int(v) for v in rng.uniform(0, 70, 3) + (0 if dark else 185))
        ImageDraw.Draw(layer).text((4 - box[0], 4 - box[1]), word, font=f, fill=color + (255,))
        layer = layer.rotate(math.degrees(angle) / 2, expand=True, resample=Image.Resampling.BICUBIC)
        if layer.width > BIG:
            layer = layer.resize((BIG, max(1, layer.height * BIG // layer.width)))
        x = int(rng.uniform(0, max(1, BIG - layer.width)))
        y = int(rng.uniform(0, max(1, BIG - layer.height)))
        img.paste(layer, (x, y), layer)
        out = np.asarray(img, float)
    else:
        fill = _fill(rng, bg)
        if form == "copies":
            mask = Image.new("L", (BIG, BIG), 0)
            for _ in range(int(rng.integers(2, 7))):
                r = rng.uniform(0.1, 0.2) * BIG
                one = _mask(rng, concept, rng.uniform(0, BIG, 2), r, math.radians(rng.uniform(-25, 25)))
                mask = Image.fromarray(np.maximum(np.asarray(mask), np.asarray(one)))
        elif form == "cropped":
            r = rng.uniform(0.4, 0.6) * BIG
            mask = _mask(rng, concept, BIG / 2 + rng.uniform(-0.25, 0.25, 2) * BIG, r, angle)
        else:
            r = rng.uniform(0.2, 0.42) * BIG
            center = rng.uniform(r * 0.8, BIG - r * 0.8, 2)
            mask = _mask(rng, concept, center, r, angle, outline=rng.uniform(2, 9) if form == "outline" else 0)
        out = _compose(bg, fill, mask)
    img = Image.fromarray(out.clip(0, 255).astype(np.uint8)).resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    return _augment(rng, img)


def _augment(rng, img: Image.Image) -> Image.Image:
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    x = np.asarray(img, float)
    if rng.random() < 0.3:
        x = x[..., rng.permutation(3)]
    if rng.random() < 0.15:
        x = 255 - x
    if rng.random() < 0.4:
        x = (x - x.mean()) * rng.uniform(0.5, 1.5) + x.mean()
    if rng.random() < 0.4:
        x = x + rng.normal(0, rng.uniform(3, 25), x.shape)
    if rng.random() < 0.3:  # a render's colored high-frequency texture over everything
        noise = np.asarray(Image.fromarray(_fourier_noise(rng, 0.6).astype(np.uint8)).resize((SIZE, SIZE)), float)
        a = rng.uniform(0.1, 0.35)
        x = x * (1 - a) + noise * a
    return Image.fromarray(x.clip(0, 255).astype(np.uint8))


def dataset(n_per_cell: int, seed: int, forms=FORMS) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``n_per_cell`` images per (form, concept): images [N, 3, 64, 64] in [0, 1], labels, forms."""
    rng = np.random.default_rng(seed)
    xs, ys, fs = [], [], []
    for form in forms:
        for c, concept in enumerate(CONCEPTS):
            for _ in range(n_per_cell):
                xs.append(np.asarray(draw(np.random.default_rng(rng.integers(2**62)), concept, form)))
                ys.append(c)
                fs.append(form)
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255
    return x, torch.tensor(ys), fs


# -- the classifier -------------------------------------------------------------------------------------
class Judge(nn.Module):
    """A small CNN over 64 px images in [0, 1]: a strided stem, then four stages of two 3x3
    convolutions at 32, 16, 8 and 4 px, global average pooling and a linear head."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        def conv(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        layers, c = conv(3, width, 2), width
        for i, w in enumerate((width, 2 * width, 4 * width, 8 * width)):
            layers += conv(c, w, 1 if i == 0 else 2) + conv(w, w)
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(c, len(CONCEPTS)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) / 0.25
        return self.head(self.features(x).mean(dim=(2, 3)))


@dataclass
class JudgeSettings:
    version: int = VERSION
    per_cell: int = 300
    epochs: int = 14
    batch: int = 128
    lr: float = 3e-3
    width: int = 16
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mmneurons" / "bench"


def train(settings: JudgeSettings | None = None, log=print) -> Judge:
    settings = settings or JudgeSettings()
    torch.manual_seed(settings.seed)
    t0 = time.perf_counter()
    data = cache_dir() / f"shape-judge-data-v{VERSION}-{settings.per_cell}-{settings.seed}.pt"
    if data.exists():
        x, y = torch.load(data, weights_only=True)
    else:
        x, y, _ = dataset(settings.per_cell, settings.seed)
        data.parent.mkdir(parents=True, exist_ok=True)
        _save((x.mul(255).round().to(torch.uint8), y), data)
    x = x.float() / 255 if x.dtype == torch.uint8 else x
    log(f"judge: generated {len(x)} images in {time.perf_counter() - t0:.0f} s")
    model = Judge(settings.width)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.05)
    steps = settings.epochs * math.ceil(len(x) / settings.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=steps)
    g = torch.Generator().manual_seed(settings.seed)
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(0, len(x), settings.batch):
            idx = order[i:i + settings.batch]
            xb = x[idx]
            flip = torch.rand(len(xb), generator=g) < 0.5  # mirror images show the same concepts
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = nn.functional.cross_entropy(model(xb), y[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"judge: epoch {epoch + 1}/{settings.epochs} loss {total / len(x):.3f} ({time.perf_counter() - t0:.0f} s)")
    return model.eval()


def load(settings: JudgeSettings | None = None, log=print) -> Judge:
    """The trained judge, from the cache or trained now (then cached)."""
    settings = settings or JudgeSettings()
    path = cache_dir() / f"shape-judge-{settings.key()}.pt"
    if path.exists():
        model = Judge(settings.width)
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    model = train(settings, log)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(model.state_dict(), path)
    return model


def _save(obj, path: Path) -> None:
    """Written whole or not at all: a run stopped midway leaves no half file to load next time."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


@torch.no_grad()
def probabilities(judge: Judge, images: torch.Tensor) -> torch.Tensor:
    """p(concept | image) [N, 12], averaged over the image and its mirror."""
    out = []
    for i in range(0, len(images), 256):
        xb = images[i:i + 256].float()
        out.append((judge(xb).softmax(1) + judge(xb.flip(3)).softmax(1)) / 2)
    return torch.cat(out)


def held_out_accuracy(judge: Judge, per_cell: int = 40, seed: int = 12345) -> dict[str, float]:
    """Accuracy per form of the judge's own generator (new seed), and on the demo's probe images
    (photo, drawing, text; never trained on: a transfer check)."""
    from mmneurons.plugins.demo.data import ShapesSource, probe_specs

    x, y, forms = dataset(per_cell, seed)
    right = (probabilities(judge, x).argmax(1) == y).numpy()
    result = {form: float(right[[f == form for f in forms]].mean()) for form in FORMS}
    demo = ShapesSource(probe_specs(per_cell // 2, seed))
    xs = torch.from_numpy(np.stack([np.asarray(demo.load(i)) for i in range(len(demo))])).permute(0, 3, 1, 2) / 255
    ys = torch.tensor([CONCEPTS.index(demo.record(i).category) for i in range(len(demo))])
    dright = (probabilities(judge, xs.float()).argmax(1) == ys).numpy()
    for form in ("photo", "drawing", "text"):
        result[f"demo {form}"] = float(dright[[demo.record(i).meta["form"] == form for i in range(len(demo))]].mean())
    return result


if __name__ == "__main__":
    torch.set_num_threads(os.cpu_count() or 1)
    judge = load()
    print(json.dumps({k: round(v, 3) for k, v in held_out_accuracy(judge).items()}, indent=1))
