"""Synthetic concept images: 12 shapes as a photo, a drawing or a written word.

Every image is a pure function of ``(seed, index)`` (or of an explicit spec), so a data set is
reproducible without storing it. Shapes are drawn at twice the size and downsampled for
anti-aliasing. Rotation stays within +-15 degrees so square and diamond remain different shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mmneurons.analysis.typographic import ATTACK_POSITIONS
from mmneurons.images import ImageRecord, font

CONCEPTS = ("circle", "square", "triangle", "star", "heart", "cross",
            "arrow", "moon", "ring", "diamond", "hexagon", "spiral")
FORMS = ("photo", "drawing", "text")
#: bump when the generator's output changes, so cached renderings are not reused
DATA_VERSION = 1
#: training mixture: a "sign" is a photo of one concept with another concept's word written on it
KINDS = ("photo", "drawing", "text", "sign")
KIND_WEIGHTS = (0.29, 0.29, 0.27, 0.15)
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
         "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
         "STIXGeneral.ttf", "STIXGeneralBol.ttf", "cmss10.ttf", "cmtt10.ttf")
EVAL_FONTS = ("DejaVuSansDisplay.ttf", "STIXGeneralItalic.ttf", "cmr10.ttf")
SCALE = 2  # supersampling factor


# -- geometry: each concept as closed polygons (unit radius), "holes" and open strokes -----------------
def _ngon(n: int, phase: float = 0.0, rx: float = 1.0, ry: float = 1.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False) + phase
    return np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)


def _star() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 10, endpoint=False) - np.pi / 2
    r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 80, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y + 2.5], axis=1) / 17.0
    return pts


def _cross(w: float = 0.34) -> np.ndarray:
    return np.array([(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w),
                     (-1, w), (-1, -w), (-w, -w)], dtype=float)


def _arrow() -> np.ndarray:
    return np.array([(-1, -0.22), (0.15, -0.22), (0.15, -0.6), (1, 0), (0.15, 0.6), (0.15, 0.22),
                     (-1, 0.22)], dtype=float)


def _crescent(c2: np.ndarray, r2: float) -> np.ndarray:
    """Outer unit circle minus the circle (c2, r2), as one polygon."""
    t = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    ring = np.stack([np.cos(t), np.sin(t)], axis=1)
    keep = np.linalg.norm(ring - c2, axis=1) > r2
    order = np.roll(np.arange(360), -np.argmax(keep & ~np.roll(keep, 1)))
    outer = ring[order][keep[order]]
    a0 = math.atan2(*(outer[0] - c2)[::-1])
    a1 = math.atan2(*(outer[-1] - c2)[::-1])
    if a1 < a0:
        a1 += 2 * np.pi
    s = np.linspace(a1, a0, 120)
    inner = c2 + r2 * np.stack([np.cos(s), np.sin(s)], axis=1)
    inner = inner[np.linalg.norm(inner, axis=1) <= 1.0 + 1e-6]
    return np.concatenate([outer, inner])


def _spiral() -> np.ndarray:
    t = np.linspace(0.3, 3.2 * np.pi, 160)
    r = t / t.max()
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


@lru_cache(maxsize=None)
def shape_paths(concept: str) -> tuple[tuple[np.ndarray, str], ...]:
    """(points, role) pairs; role is "fill", "hole" or "stroke" (an open path drawn thick)."""
    paths = {
        "circle": [(_ngon(72), "fill")],
        "square": [(_ngon(4, np.pi / 4) * 1.2, "fill")],
        "triangle": [(_ngon(3, -np.pi / 2) * np.array([1.05, 1.0]) + [0, 0.2], "fill")],
        "star": [(_star(), "fill")],
        "heart": [(_heart(), "fill")],
        "cross": [(_cross(), "fill")],
        "arrow": [(_arrow(), "fill")],
        "moon": [(_crescent(np.array([0.45, -0.15]), 0.82), "fill")],
        "ring": [(_ngon(72), "fill"), (_ngon(72) * 0.58, "hole")],
        "diamond": [(_ngon(4, 0, 0.68, 1.05), "fill")],
        "hexagon": [(_ngon(6), "fill")],
        "spiral": [(_spiral(), "stroke")],
    }[concept]
    return tuple(paths)


# -- random pieces -------------------------------------------------------------------------------
def _luma(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _color(rng: np.random.Generator, *, away_from=None, min_gap: float = 70.0) -> tuple[int, int, int]:
    for _ in range(50):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        if away_from is None or abs(_luma(c) - _luma(away_from)) >= min_gap:
            return c
    return (0, 0, 0) if _luma(away_from) > 127 else (255, 255, 255)


def background(rng: np.random.Generator, size: int, style: str) -> np.ndarray:
    """HxWx3 float background: ``noisy``, ``gradient`` or ``paper``."""
    if style == "paper":
        base = np.array([rng.uniform(228, 250), rng.uniform(222, 246), rng.uniform(200, 236)])
        img = base + rng.normal(0, 4, (size, size, 1)) + rng.normal(0, 2, (size, size, 3))
    elif style == "gradient":
        a, b = np.array(_color(rng), float), np.array(_color(rng), float)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
        t = np.clip(0.5 + xx * np.cos(angle) + yy * np.sin(angle), 0, 1)[..., None]
        img = a * (1 - t) + b * t + rng.normal(0, 6, (size, size, 3))
    else:
        base = np.array(_color(rng), float)
        img = base + rng.normal(0, rng.uniform(8, 30), (size, size, 3))
    return np.clip(img, 0, 255)


def _place(rng: np.random.Generator, size: int, paths, *, scale=(0.24, 0.38), rotation=15.0,
           center=None, flip_ok=False):
    radius = rng.uniform(*scale) * size
    angle = math.radians(rng.uniform(-rotation, rotation))
    aspect = rng.uniform(0.9, 1.1)
    if center is None:
        margin = radius * 1.1
        center = rng.uniform(margin, size - margin, 2)
    flip = flip_ok and rng.random() < 0.5
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    out = []
    for pts, role in paths:
        p = pts * np.array([aspect, 1 / aspect])
        if flip:
            p = p * np.array([-1, 1])
        out.append(((p @ rot.T) * radius + center, role))
    return out, radius


def _mask(size: int, placed, stroke_width: float) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for pts, role in placed:
        xy = [tuple(p) for p in pts]
        if role == "stroke":
            draw.line(xy, fill=255, width=max(1, int(stroke_width)), joint="curve")
        else:
            draw.polygon(xy, fill=255 if role == "fill" else 0)
    return mask


def _wobble(rng: np.random.Generator, pts: np.ndarray, amount: float, closed: bool) -> np.ndarray:
    """Resample a path densely and displace it by smooth random noise (a hand-drawn line)."""
    if closed:
        pts = np.concatenate([pts, pts[:1]])
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    n = max(20, int(s[-1] / 2))
    u = np.linspace(0, s[-1], n)
    dense = np.stack([np.interp(u, s, pts[:, 0]), np.interp(u, s, pts[:, 1])], axis=1)
    phase = rng.uniform(0, 2 * np.pi, (3, 2))
    freq = rng.uniform(1, 4, (3, 1))
    tt = u / max(s[-1], 1e-6) * 2 * np.pi
    noise = sum(np.stack([np.sin(f * tt + ph[0]), np.sin(f * tt + ph[1])], axis=1) for f, ph in zip(freq, phase))
    return dense + noise * amount / 3


# -- the three forms -----------------------------------------------------------------------------
def render_photo(rng: np.random.Generator, concept: str, size: int = 64, *, bg=None, scale=(0.24, 0.38),
                 center=None) -> np.ndarray:
    """A filled, shaded, textured shape with a drop shadow on a noisy or gradient background."""
    big = size * SCALE
    img = background(rng, big, rng.choice(["noisy", "gradient"])) if bg is None else bg
    placed, radius = _place(rng, big, shape_paths(concept), scale=scale, center=center, flip_ok=True)
    mask = _mask(big, placed, stroke_width=radius * 0.32)
    offset = (rng.uniform(0.05, 0.12) * radius * np.array([1, 1])).astype(int)
    shadow = np.asarray(mask.filter(ImageFilter.GaussianBlur(radius * 0.12)), float) / 255
    shadow = np.roll(shadow, tuple(offset), axis=(0, 1))[..., None]
    img = img * (1 - 0.45 * shadow)
    fill = np.array(_color(rng, away_from=img.mean(axis=(0, 1))), float)
    yy, xx = np.mgrid[0:big, 0:big] / big - 0.5
    light = rng.uniform(0, 2 * np.pi)
    shade = 1 + rng.uniform(0.2, 0.5) * (xx * np.cos(light) + yy * np.sin(light))
    texture = 1 + rng.normal(0, rng.uniform(0.02, 0.12), (big, big))
    body = np.clip(fill * (shade * texture)[..., None], 0, 255)
    m = np.asarray(mask, float)[..., None] / 255
    return img * (1 - m) + body * m


def render_drawing(rng: np.random.Generator, concept: str, size: int = 64) -> np.ndarray:
    """A thin, slightly wobbly outline on a paper-like background."""
    big = size * SCALE
    img = background(rng, big, "paper" if rng.random() < 0.85 else "gradient")
    placed, radius = _place(rng, big, shape_paths(concept), flip_ok=True)
    ink = _color(rng, away_from=img.mean(axis=(0, 1)), min_gap=110)
    layer = Image.fromarray(img.astype(np.uint8))
    draw = ImageDraw.Draw(layer)
    width = int(rng.integers(2, 5))
    for pts, role in placed:
        line = _wobble(rng, pts, amount=radius * 0.06, closed=role != "stroke")
        draw.line([tuple(p) for p in line], fill=ink, width=width, joint="curve")
    return np.asarray(layer, float)


def _text_layer(rng: np.random.Generator, word: str, big: int, *, fonts=FONTS, width_frac=(0.45, 0.92),
                center=None, rotation=10.0, color=None, box=None):
    """(RGBA layer with the word, its bounding box)."""
    case = rng.integers(3)
    word = word.lower() if case == 0 else word.upper() if case == 1 else word.title()
    font_name = fonts[int(rng.integers(len(fonts)))]
    target = rng.uniform(*width_frac) * big
    probe = font(font_name, 40)
    # The word fills a random fraction of the width, so short words get larger glyphs. Sizing every
    # word like the longest one instead made text zero-shot accuracy fall from 0.94 to 0.63 at 64 px
    # while the random-init control's "ring" units remained (docs/demo-model.md).
    w0 = max(1, probe.getlength(word))
    fsize = int(np.clip(40 * target / w0, 8, big * 0.5))
    f = font(font_name, fsize)
    left, top, right, bottom = f.getbbox(word)
    tw, th = right - left, bottom - top
    pad = int(fsize * 0.25)
    layer = Image.new("RGBA", (tw + 2 * pad, th + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if box is not None:
        draw.rectangle([0, 0, layer.width - 1, layer.height - 1], fill=box + (255,))
    draw.text((pad - left, pad - top), word, font=f, fill=(color or (0, 0, 0)) + (255,))
    layer = layer.rotate(rng.uniform(-rotation, rotation), resample=Image.Resampling.BICUBIC, expand=True)
    if center is None:
        cx = rng.uniform(min(layer.width / 2, big / 2), max(big - layer.width / 2, big / 2))
        cy = rng.uniform(min(layer.height / 2, big / 2), max(big - layer.height / 2, big / 2))
    else:  # a fixed position, moved just enough for the text to stay inside the image
        cx = float(np.clip(center[0], layer.width / 2, max(big - layer.width / 2, layer.width / 2)))
        cy = float(np.clip(center[1], layer.height / 2, max(big - layer.height / 2, layer.height / 2)))
    return layer, (int(cx - layer.width / 2), int(cy - layer.height / 2))


def _paste(img: np.ndarray, layer: Image.Image, xy) -> np.ndarray:
    base = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).convert("RGBA")
    base.alpha_composite(layer, dest=(max(0, xy[0]), max(0, xy[1])),
                         source=(max(0, -xy[0]), max(0, -xy[1])))
    return np.asarray(base.convert("RGB"), float)


def render_text(rng: np.random.Generator, concept: str, size: int = 64, *, fonts=FONTS) -> np.ndarray:
    """The concept's word in one of several fonts, cases, sizes, positions, rotations and colors."""
    big = size * SCALE
    img = background(rng, big, rng.choice(["noisy", "gradient", "paper"]))
    color = _color(rng, away_from=img.mean(axis=(0, 1)), min_gap=110)
    layer, xy = _text_layer(rng, concept, big, fonts=fonts, color=color)
    return _paste(img, layer, xy)


def render_sign(rng: np.random.Generator, concept: str, word: str, size: int = 64, *, position=None,
                fonts=FONTS, width_frac=(0.35, 0.6)) -> np.ndarray:
    """A photo of ``concept`` with ``word`` written on it (a label or a sign)."""
    big = size * SCALE
    img = render_photo(rng, concept, size)
    boxed = rng.random() < 0.6
    box = _color(rng) if boxed else None
    color = _color(rng, away_from=box if boxed else img.mean(axis=(0, 1)), min_gap=110)
    center = None if position is None else (position[0] * big, position[1] * big)
    layer, xy = _text_layer(rng, word, big, fonts=fonts, width_frac=width_frac, center=center, rotation=6,
                            color=color, box=box)
    return _paste(img, layer, xy)


def finish(img: np.ndarray, size: int) -> Image.Image:
    big = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    return big.resize((size, size), Image.Resampling.LANCZOS)


# -- specs and data sets -------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """What one image shows: ``kind`` in KINDS, its concept, and for signs the written word."""

    kind: str
    concept: str
    word: str | None = None
    position: int | None = None  # attack position index, for evaluation signs
    seed: int = 0


def render(spec: Spec, size: int = 64, *, eval_fonts: bool = False) -> Image.Image:
    rng = np.random.default_rng(spec.seed)
    fonts = EVAL_FONTS + FONTS[:3] if eval_fonts else FONTS
    if spec.kind == "photo":
        img = render_photo(rng, spec.concept, size)
    elif spec.kind == "drawing":
        img = render_drawing(rng, spec.concept, size)
    elif spec.kind == "text":
        img = render_text(rng, spec.concept, size, fonts=fonts)
    elif spec.kind == "sign":
        pos = ATTACK_POSITIONS[spec.position] if spec.position is not None else None
        img = render_sign(rng, spec.concept, spec.word or spec.concept, size, position=pos, fonts=fonts)
    else:
        raise ValueError(f"unknown kind {spec.kind!r}; kinds: {', '.join(KINDS)}")
    return finish(img, size)


def training_specs(n: int, seed: int) -> list[Spec]:
    """``n`` training images drawn from the KINDS mixture, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(len(KINDS), size=n, p=KIND_WEIGHTS)
    concepts = rng.integers(len(CONCEPTS), size=n)
    words = (concepts + rng.integers(1, len(CONCEPTS), size=n)) % len(CONCEPTS)
    seeds = rng.integers(2**62, size=n)
    return [Spec(KINDS[k], CONCEPTS[c], CONCEPTS[w] if KINDS[k] == "sign" else None, None, int(s))
            for k, c, w, s in zip(kinds, concepts, words, seeds)]


def probe_specs(per_cell: int, seed: int, forms=FORMS) -> list[Spec]:
    """``per_cell`` images of every (form, concept), in a fixed order: the concept x form probe set."""
    rng = np.random.default_rng(seed)
    return [Spec(form, concept, seed=int(rng.integers(2**62)))
            for form in forms for concept in CONCEPTS for _ in range(per_cell)]


def attack_specs(per_concept: int, seed: int) -> list[Spec]:
    """Photos of concept A with a different concept's word B at one of the 8 fixed positions."""
    rng = np.random.default_rng(seed)
    specs = []
    for a, concept in enumerate(CONCEPTS):
        for i in range(per_concept):
            word = CONCEPTS[(a + 1 + int(rng.integers(len(CONCEPTS) - 1))) % len(CONCEPTS)]
            specs.append(Spec("sign", concept, word, i % len(ATTACK_POSITIONS), int(rng.integers(2**62))))
    return specs


class ShapesSource:
    """An image source over specs: records carry the concept as category and the form in meta."""

    def __init__(self, specs: list[Spec], size: int = 64, *, eval_fonts: bool = True, name: str = "demo shapes"):
        self.specs, self.size, self.eval_fonts, self.name = specs, size, eval_fonts, name

    def __len__(self) -> int:
        return len(self.specs)

    def record(self, index: int) -> ImageRecord:
        s = self.specs[index]
        form = "attack" if s.kind == "sign" else s.kind
        meta = {"form": form, **({"word": s.word, "position": s.position} if s.kind == "sign" else {})}
        return ImageRecord(f"{form}/{s.concept}/{index:05d}", s.concept, meta)

    def load(self, index: int) -> Image.Image:
        return render(self.specs[index], self.size, eval_fonts=self.eval_fonts)

    def describe(self) -> str:
        return f"{self.name} ({len(self)} synthetic images)"
