"""Image sources and robust image loading.

An image source is an indexed collection of images with ids and optional categories. Loading
never crashes a scan: corrupt, truncated, zero-byte and non-image files are skipped and counted;
grayscale, palette, RGBA, CMYK and 16-bit images are converted to RGB; decompression-bomb-sized
images are refused with a message naming the file and the limit.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from .access import check_readable
from .errors import AccessError, ImageLoadError  # noqa: F401 - raised here, defined light

#: Refuse images above this many pixels (PIL's own bomb check is a warning up to twice its limit).
DEFAULT_MAX_PIXELS = 64_000_000


@dataclass(frozen=True)
class ImageRecord:
    """Identity of one image in a source: an id (path or name) and an optional category."""

    id: str
    category: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)


@runtime_checkable
class ImageSource(Protocol):
    """An indexed collection of images; ``load`` returns RGB or raises :class:`ImageLoadError`."""

    def __len__(self) -> int: ...

    def record(self, index: int) -> ImageRecord: ...

    def load(self, index: int) -> Image.Image: ...

    def describe(self) -> str: ...


def max_pixels() -> int:
    return int(os.environ.get("MMNEURONS_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS))


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: alpha composited on white, 16/32-bit and float rescaled."""
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            arr = arr / 257.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > 255 or lo < 0 or img.mode == "F" and hi > lo else arr
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if img.mode in ("P", "PA") or (img.mode in ("L", "RGB") and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def load_image(path: str | os.PathLike, *, limit: int | None = None) -> Image.Image:
    """Open, fully decode and convert one image file to RGB, or raise :class:`ImageLoadError`."""
    path = check_readable(path)  # an app served to others reads only its --data folders
    try:
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{path}: empty file (0 bytes)")
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: no such file") from None
    return _decode(path, str(path), limit)


def decode_image(data: bytes, name: str = "image", *, limit: int | None = None) -> Image.Image:
    """:func:`load_image` for bytes (an upload): the same checks and errors, named ``name``."""
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    return _decode(io.BytesIO(data), name, limit)


def _decode(fp: Any, name: str, limit: int | None) -> Image.Image:
    limit = max_pixels() if limit is None else limit
    try:
        with Image.open(fp) as img:
            w, h = img.size
            if w * h > limit:
                raise ImageLoadError(
                    f"{name}: {w}x{h} = {w * h:,} pixels is over the limit of {limit:,} "
                    f"(a decompression bomb or a huge scan); resize it or raise MMNEURONS_MAX_IMAGE_PIXELS")
            img.load()
            return to_rgb(img)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{name}: refused as a decompression bomb ({exc})") from None
    except FileNotFoundError:
        raise ImageLoadError(f"{name}: no such file") from None
    except PermissionError:
        raise ImageLoadError(f"{name}: permission denied") from None
    except IsADirectoryError:
        raise ImageLoadError(f"{name}: a folder, not an image") from None
    except (OSError, ValueError, SyntaxError, Image.UnidentifiedImageError) as exc:
        if isinstance(exc, Image.UnidentifiedImageError):  # PIL's text names the file object: ours names the file
            raise ImageLoadError(f"{name}: not an image (no format PIL reads)") from None
        detail = str(exc).replace(repr(fp), name)
        raise ImageLoadError(f"{name}: corrupt or truncated ({type(exc).__name__}: {detail})") from None


def to_pixel_array(image: Image.Image, size: int) -> np.ndarray:
    """``[size, size, 3]`` uint8: shorter side resized to ``size``, center crop (what
    :func:`to_pixels` scales to [0, 1]; a quarter of the bytes to ship between processes)."""
    image = to_rgb(image) if image.mode != "RGB" else image
    w, h = image.size
    scale = size / min(w, h)
    if (w, h) != (size, size):
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        image = image.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8)


def pixels_from_array(arr: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> float ``[..., 3, H, W]`` in [0, 1], exactly as :func:`to_pixels`."""
    return (torch.from_numpy(np.array(arr, dtype=np.uint8)).float() / 255.0).movedim(-1, -3).contiguous()


def to_pixels(image: Image.Image, size: int) -> torch.Tensor:
    """``[3, size, size]`` float pixels in [0, 1]: shorter side resized to ``size``, center crop."""
    return pixels_from_array(to_pixel_array(image, size))


def to_pil(pixels: torch.Tensor) -> Image.Image:
    """``[3, H, W]`` pixels in [0, 1] -> an RGB image (the inverse of :func:`to_pixels`)."""
    arr = (pixels.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(arr)


def _readable(path: Path) -> bool:
    try:
        check_readable(path)
        return True
    except AccessError:
        return False


def skipped_note(skipped: Sequence[Sequence[str]], first: int = 5) -> str | None:
    """One line naming the images that did not load, ``(id, reason)`` pairs: the first ``first``
    and how many more (``"2 images skipped: a.png (corrupt or truncated), b.png (...)"``)."""
    if not skipped:
        return None
    named = ", ".join(f"{image_id} ({why})" for image_id, why in list(skipped)[:first])
    more = f" and {len(skipped) - first} more" if len(skipped) > first else ""
    return f"{len(skipped)} image{'s' if len(skipped) != 1 else ''} skipped: {named}{more}"


class FolderSource:
    """Every file under ``root`` (hidden ones excepted); categories from the first subfolder."""

    def __init__(self, root: str | os.PathLike, *, recursive: bool = True) -> None:
        self.root = check_readable(root)
        if not self.root.is_dir():
            raise ImageLoadError(f"image folder {self.root} does not exist or is not a folder")
        pattern = "**/*" if recursive else "*"
        files = [p for p in self.root.glob(pattern)
                 if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.root).parts)
                 and _readable(p)]  # a symlink out of the allowed folders is not listed
        self.files = sorted(files, key=lambda p: str(p.relative_to(self.root)))
        if not self.files:
            raise ImageLoadError(f"image folder {self.root} contains no files")

    def __len__(self) -> int:
        return len(self.files)

    def record(self, index: int) -> ImageRecord:
        rel = self.files[index].relative_to(self.root)
        category = rel.parts[0] if len(rel.parts) > 1 else None
        return ImageRecord(str(rel), category)

    def load(self, index: int) -> Image.Image:
        return load_image(self.files[index])

    def describe(self) -> str:
        return f"folder {self.root} ({len(self)} files)"

    def categories(self) -> list[str | None]:
        return [self.record(i).category for i in range(len(self))]


class ListSource:
    """Images held in memory (PIL images or paths), with optional ids and categories."""

    def __init__(self, images: Sequence["Image.Image | str | os.PathLike"], *, ids: Sequence[str] | None = None,
                 categories: Sequence[str | None] | None = None, name: str = "image list") -> None:
        if not images:
            raise ImageLoadError(f"{name} is empty")
        self.images = list(images)
        self.ids = list(ids) if ids is not None else [
            str(im) if not isinstance(im, Image.Image) else f"image-{i}" for i, im in enumerate(self.images)]
        self.cats = list(categories) if categories is not None else [None] * len(self.images)
        if not len(self.ids) == len(self.cats) == len(self.images):
            raise ValueError("images, ids and categories must have the same length")
        self.name = name

    def __len__(self) -> int:
        return len(self.images)

    def record(self, index: int) -> ImageRecord:
        return ImageRecord(self.ids[index], self.cats[index])

    def load(self, index: int) -> Image.Image:
        item = self.images[index]
        return to_rgb(item) if isinstance(item, Image.Image) else load_image(item)

    def describe(self) -> str:
        return f"{self.name} ({len(self)} images)"


@lru_cache(maxsize=1)
def _font_dir() -> Path | None:
    """matplotlib's bundled TrueType fonts (installed with Lucent), found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf"
    return folder if folder.is_dir() else None


@lru_cache(maxsize=2048)
def font(name: str = "DejaVuSans.ttf", size: int = 24) -> ImageFont.FreeTypeFont:
    """A TrueType font shipped with matplotlib, else PIL's default font at that size."""
    folder = _font_dir()
    try:
        if folder is not None:
            return ImageFont.truetype(str(folder / name), size)
    except OSError:
        pass
    return ImageFont.load_default(size=size)


def render_word(word: str, size: int = 224, *, font_name: str = "DejaVuSans.ttf",
                color=(0, 0, 0), background=(255, 255, 255)) -> Image.Image:
    """``word`` in black on white, as large as fits ``size`` with a margin (the paper's rendered words)."""
    img = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(img)
    font_size = size // 2
    while font_size > 6:
        f = font(font_name, font_size)
        left, top, right, bottom = draw.textbbox((0, 0), word, font=f)
        if right - left <= size * 0.9 and bottom - top <= size * 0.9:
            break
        font_size = int(font_size * 0.85)
    f = font(font_name, font_size)
    left, top, right, bottom = draw.textbbox((0, 0), word, font=f)
    draw.text(((size - (right - left)) / 2 - left, (size - (bottom - top)) / 2 - top), word, font=f, fill=color)
    return img


def write_text(image, text: str, position: tuple[float, float], *, size: float = 0.2,
               color=(0, 0, 0), box: tuple | None = (255, 255, 255)):
    """``image`` with ``text`` written centered at ``position`` (fractions of the side), the font
    ``size`` a fraction of the image height, on a backing ``box`` color (None: no box); kept inside."""
    from PIL import ImageDraw

    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    f = font("DejaVuSans-Bold.ttf", max(6, int(size * out.height)))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=f)
    w, h = right - left, bottom - top
    pad = max(1, h // 5)
    cx = min(max(position[0] * out.width, w / 2 + pad), out.width - w / 2 - pad)
    cy = min(max(position[1] * out.height, h / 2 + pad), out.height - h / 2 - pad)
    x0, y0 = cx - w / 2, cy - h / 2
    if box is not None:
        draw.rectangle([x0 - pad, y0 - pad, x0 + w + pad, y0 + h + pad], fill=tuple(box))
    draw.text((x0 - left, y0 - top), text, font=f, fill=tuple(color))
    return out


def parse_color(text: str) -> tuple[int, int, int] | None:
    """``"black"`` / ``"255,0,0"`` -> an RGB tuple; ``"none"`` -> None (no color, e.g. no backing box)."""
    if text.lower() == "none":
        return None
    named = {"black": (0, 0, 0), "white": (255, 255, 255), "red": (220, 0, 0), "yellow": (255, 220, 0)}
    if text.lower() in named:
        return named[text.lower()]
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or not all(0 <= p <= 255 for p in parts):
        raise ValueError(f"color {text!r}: write a name (black, white, red, yellow), R,G,B or none")
    return tuple(parts)


class WordSource:
    """Words rendered as images (black text on white), one image per word; the category is the word."""

    def __init__(self, words: Sequence[str], *, size: int = 224, font_name: str = "DejaVuSans.ttf") -> None:
        words = [w.strip() for w in words if w and w.strip()]
        if not words:
            raise ImageLoadError("the word list is empty")
        self.words = list(dict.fromkeys(words))
        self.size = size
        self.font_name = font_name

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs) -> "WordSource":
        path = check_readable(path)
        if not path.is_file():
            raise ImageLoadError(f"word list {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ImageLoadError(f"word list {path} is not UTF-8 text (byte {exc.start}); give a text file "
                                 f"with one word per line") from None
        except PermissionError:
            raise ImageLoadError(f"word list {path}: permission denied") from None
        if "\x00" in text:
            raise ImageLoadError(f"word list {path} is a binary file, not text with one word per line")
        return cls(text.splitlines(), **kwargs)

    def __len__(self) -> int:
        return len(self.words)

    def record(self, index: int) -> ImageRecord:
        return ImageRecord(self.words[index], self.words[index])

    def load(self, index: int) -> Image.Image:
        return render_word(self.words[index], self.size, font_name=self.font_name)

    def describe(self) -> str:
        return f"{len(self)} rendered words"


# -- batching ------------------------------------------------------------------------------------
@dataclass
class Batch:
    """Pixels of the images that loaded, their indices in the source, and the skipped ones."""

    pixels: torch.Tensor
    indices: torch.Tensor
    skipped: list[tuple[int, str]]

    def pin_memory(self) -> "Batch":  # what a DataLoader with pin_memory=True calls
        return Batch(self.pixels.pin_memory(), self.indices, self.skipped)


class _PixelDataset(torch.utils.data.Dataset):
    def __init__(self, source: ImageSource, size: int) -> None:
        self.source, self.size = source, size

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        try:
            return index, to_pixels(self.source.load(index), self.size), None
        except ImageLoadError as exc:
            return index, None, str(exc)


def _collate(items, size: int) -> Batch:
    ok = [(i, px) for i, px, _ in items if px is not None]
    skipped = [(i, err) for i, px, err in items if px is None]
    pixels = torch.stack([px for _, px in ok]) if ok else torch.empty(0, 3, size, size)
    return Batch(pixels, torch.tensor([i for i, _ in ok], dtype=torch.long), skipped)


class _Collate:  # picklable for worker processes
    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, items) -> Batch:
        return _collate(items, self.size)


def default_workers(n_images: int) -> int:
    """Loader processes: none for small jobs, else up to 4 leaving one core for the model."""
    if n_images < 64:
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def iterate_batches(source: ImageSource, size: int, *, batch_size: int = 32, num_workers: int | None = None,
                    batches: Sequence[int] | None = None, pin_memory: bool = False) -> Iterator[Batch]:
    """Batches of ``[B, 3, size, size]`` pixels in source order; unreadable images go to
    ``skipped``. ``batches``: only these batch numbers (batch ``j`` holds images ``j * batch_size``
    up to the next multiple), in the order given. ``pin_memory``: page-locked pixels, for a fast
    copy to a GPU while the next batch decodes."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = len(source)
    if batches is None:
        batches = range(-(-n // batch_size))
    plan = [list(range(b * batch_size, min((b + 1) * batch_size, n))) for b in batches]
    workers = default_workers(sum(len(p) for p in plan)) if num_workers is None else num_workers
    loader = torch.utils.data.DataLoader(
        _PixelDataset(source, size), batch_sampler=plan, num_workers=workers,
        collate_fn=_Collate(size), persistent_workers=False, pin_memory=pin_memory,
    )
    yield from loader
