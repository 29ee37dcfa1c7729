"""Robust image loading: every bad input is skipped and counted, or refused with a clear message."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from mmneurons.activations import scan_top_k
from mmneurons.images import (FolderSource, ImageLoadError, ListSource, WordSource, iterate_batches, load_image,
                              render_word, to_pixels)


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def messy_folder(tmp_path):
    """Two categories of good images plus one of each kind of bad file."""
    rng = np.random.default_rng(1)
    for cat in ("cats", "dogs"):
        (tmp_path / cat).mkdir()
        for i in range(3):
            arr = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cat / f"{i}.png")
    good = _png_bytes(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    (tmp_path / "dogs" / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "dogs" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + rng.bytes(500))
    (tmp_path / "cats" / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize("name, reason", [
    ("dogs/truncated.png", "corrupt or truncated"),
    ("dogs/corrupt.jpg", "corrupt or truncated"),
    ("cats/empty.png", "empty file (0 bytes)"),
    ("notes.txt", "not an image"),
])
def test_each_bad_file_gives_a_clear_reason(messy_folder, name, reason):
    with pytest.raises(ImageLoadError) as err:
        load_image(messy_folder / name)
    assert reason in str(err.value) and name.split("/")[-1] in str(err.value)


def test_a_scan_skips_and_counts_bad_files(messy_folder, tiny_resnet):
    source = FolderSource(messy_folder)
    assert len(source) == 10  # hidden files are not listed
    assert source.record(0).category == "cats"
    result = scan_top_k(tiny_resnet, source, "layer2", k=2, batch_size=4)
    assert result.n_images == 6
    assert sorted(i for i, _ in result.skipped) == ["cats/empty.png", "dogs/corrupt.jpg", "dogs/truncated.png",
                                                    "notes.txt"]
    loaded = {result.image_ids[i] for i in result.top_indices.ravel()}
    assert all(name.endswith(("0.png", "1.png", "2.png")) for name in loaded)


def test_all_corrupt_empty_and_missing_folders(tmp_path, tiny_resnet):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"garbage")
    (tmp_path / "bad" / "b.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="no image could be loaded from folder .*bad.*: 2 skipped"):
        scan_top_k(tiny_resnet, FolderSource(tmp_path / "bad"), "layer2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageLoadError, match="contains no files"):
        FolderSource(tmp_path / "empty")
    with pytest.raises(ImageLoadError, match="does not exist"):
        FolderSource(tmp_path / "missing")


def test_modes_are_converted_to_rgb(tmp_path):
    Image.new("L", (8, 8), 100).save(tmp_path / "gray.png")
    assert load_image(tmp_path / "gray.png").getpixel((0, 0)) == (100, 100, 100)
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red -> white background
    rgba.save(tmp_path / "rgba.png")
    assert load_image(tmp_path / "rgba.png").getpixel((0, 0)) == (255, 255, 255)
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    r, g, b = load_image(tmp_path / "cmyk.jpg").getpixel((0, 0))
    assert r > 200 and g < 60 and b < 60
    arr16 = np.full((8, 8), 65535 // 2, dtype=np.uint16)
    Image.fromarray(arr16).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    v = load_image(tmp_path / "deep.png").getpixel((0, 0))
    assert v[0] == v[1] == v[2] and 120 <= v[0] <= 135  # mid-gray, not clipped white
    pal = Image.new("P", (8, 8), 3)
    pal.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * 756)
    pal.save(tmp_path / "pal.png")
    assert load_image(tmp_path / "pal.png").getpixel((0, 0)) == (70, 80, 90)


def test_decompression_bomb_sized_images_are_refused(tmp_path, monkeypatch):
    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    with pytest.raises(ImageLoadError, match=r"300x200 = 60,000 pixels is over the limit of 10,000"):
        load_image(tmp_path / "big.png", limit=10_000)
    monkeypatch.setenv("MMNEURONS_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(tmp_path / "big.png")


def test_pixels_are_resized_and_center_cropped():
    img = Image.new("RGB", (100, 50), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 20, 50))  # a blue strip that the center crop removes
    px = to_pixels(img, 32)
    assert px.shape == (3, 32, 32) and px.min() >= 0 and px.max() <= 1
    assert torch.allclose(px[0], torch.ones(32, 32), atol=0.02) and px[2].max() < 0.05


def test_batches_keep_order_and_report_skips():
    images = [Image.new("RGB", (10, 10), (i * 20, 0, 0)) for i in range(5)]
    source = ListSource(images + ["/no/such.png"], ids=[f"i{i}" for i in range(6)])
    batches = list(iterate_batches(source, 16, batch_size=4, num_workers=0))
    assert [b.indices.tolist() for b in batches] == [[0, 1, 2, 3], [4]]
    assert batches[1].skipped[0][0] == 5 and "no such file" in batches[1].skipped[0][1]
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(iterate_batches(source, 16, batch_size=0))


def test_words_render_centered_and_empty_lists_fail(tmp_path):
    img = render_word("spider", 64)
    arr = np.asarray(img)
    ink = np.argwhere(arr.min(axis=2) < 128)
    assert len(ink) > 50
    center = ink.mean(axis=0)
    assert abs(center[0] - 32) < 6 and abs(center[1] - 32) < 6
    with pytest.raises(ImageLoadError, match="word list is empty"):
        WordSource(["", "  "])
    (tmp_path / "w.txt").write_text("cat\ndog\ncat\n")
    source = WordSource.from_file(tmp_path / "w.txt", size=32)
    assert source.words == ["cat", "dog"] and source.record(1).category == "dog"


def test_uploaded_bytes_get_the_same_checks_as_files():
    from mmneurons.images import decode_image

    buf = io.BytesIO()
    Image.new("RGBA", (30, 20), (0, 255, 0, 128)).save(buf, format="PNG")
    image = decode_image(buf.getvalue(), "green.png")
    assert image.mode == "RGB" and image.size == (30, 20)
    with pytest.raises(ImageLoadError, match="upload.png: empty file"):
        decode_image(b"", "upload.png")
    with pytest.raises(ImageLoadError, match="notes.png: not an image"):
        decode_image(b"hello", "notes.png")
    with pytest.raises(ImageLoadError, match="big.png: 30x20 = 600 pixels is over the limit of 100"):
        decode_image(buf.getvalue(), "big.png", limit=100)
    with pytest.raises(ImageLoadError, match="cut.png: corrupt or truncated"):
        decode_image(buf.getvalue()[:60], "cut.png")


def test_colors_parse_by_name_or_rgb():
    from mmneurons.images import parse_color

    assert parse_color("Black") == (0, 0, 0) and parse_color("10,20,30") == (10, 20, 30)
    assert parse_color("none") is None
    for bad in ("purple-ish", "1,2", "1,2,300"):
        with pytest.raises(ValueError, match="write a name"):
            parse_color(bad)


def test_unreadable_files_say_why(tmp_path, monkeypatch):
    from PIL import Image

    from mmneurons.images import ImageLoadError, WordSource, load_image

    path = tmp_path / "locked.png"
    Image.new("RGB", (8, 8)).save(path)

    def denied(*args, **kwargs):  # what open() raises for a file without read permission (root reads all)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(ImageLoadError, match="locked.png: permission denied$"):
        load_image(path)
    monkeypatch.undo()
    binary = tmp_path / "words.bin"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ImageLoadError, match="word list .*words.bin is not UTF-8 text"):
        WordSource.from_file(binary)
    binary.write_bytes(b"star\x00moon\n")
    with pytest.raises(ImageLoadError, match="word list .*words.bin is a binary file"):
        WordSource.from_file(binary)


def test_uploads_are_named_by_their_name_in_errors_and_results(tiny_resnet):
    import io

    from PIL import Image

    from mmneurons.images import ImageLoadError
    from mmneurons.plugins.captum_attr import to_batch

    bad = io.BytesIO(b"not an image")
    bad.name = "holiday.png"
    with pytest.raises(ImageLoadError, match="^holiday.png: not an image") as err:
        to_batch(tiny_resnet, [bad])
    assert "BytesIO" not in str(err.value)
    good = io.BytesIO()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(good, format="PNG")
    good.name = "/tmp/uploads/red.png"
    pixels, ids = to_batch(tiny_resnet, [good])
    assert ids == ["red.png"] and pixels.shape == (1, 3, 64, 64)
