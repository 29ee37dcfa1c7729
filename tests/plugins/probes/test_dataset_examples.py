"""Dataset examples: top/bottom images against brute force, activation maps, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmneurons.activations import capture_layers
from mmneurons.images import ImageLoadError, ListSource, WordSource, to_pixels
from mmneurons.units import Unit


def test_unit_examples_and_maps_match_brute_force(registry, tiny_resnet, random_images):
    probe = registry.get("mmneurons_probes", "dataset_examples")
    source = ListSource(random_images, categories=["a", "b"] * 20)
    acts = capture_layers(tiny_resnet, torch.stack([to_pixels(im, 64) for im in random_images]), ["layer3"])["layer3"]
    values = acts[:, 7].mean(dim=(1, 2)).numpy()
    result = probe.run(tiny_resnet, "layer3:7", source, {"k": 4, "batch_size": 9})
    top = result.table("top")
    assert [row["activation"] for row in top] == pytest.approx(sorted(values, reverse=True)[:4], abs=1e-5)
    assert [row["activation"] for row in result.table("bottom")] == pytest.approx(sorted(values)[:4], abs=1e-5)
    assert top[0]["image"] == f"image-{int(np.argmax(values))}" and top[0]["category"] in ("a", "b")
    assert len(result.images) == 8 and result.images[0].size == (64, 64)
    [heat] = probe.maps(tiny_resnet, [random_images[int(np.argmax(values))]], Unit("layer3", 7))
    assert np.allclose(heat, np.clip(acts[int(np.argmax(values)), 7].numpy(), 0, None), atol=1e-5)


def test_whole_layer_and_k_larger_than_the_images(registry, tiny_resnet, random_images):
    probe = registry.get("mmneurons_probes", "dataset_examples")
    result = probe.run(tiny_resnet, "layer2", ListSource(random_images[:5]), {"k": 9})
    assert len(result.table("units")) == 128 and result.arrays["top_indices"].shape == (128, 5)
    assert "k=9 is larger than the 5 images" in result.warnings[0]


def test_rendered_words_rank_like_brute_force(registry, tiny_resnet):
    probe = registry.get("mmneurons_probes", "rendered_words")
    words = ["star", "moon", "ring", "cat", "house", "a", "photosynthesis"]
    source = WordSource(words, size=64)
    result = probe.run(tiny_resnet, "layer3:3", source, {"top": 3, "centered": False})
    pixels = torch.stack([to_pixels(source.load(i), 64) for i in range(len(words))])
    values = capture_layers(tiny_resnet, pixels, ["layer3"])["layer3"][:, 3].mean(dim=(1, 2)).numpy()
    assert [r["word"] for r in result.table("words")] == [words[i] for i in np.argsort(-values)[:3]]
    centered = probe.run(tiny_resnet, "layer3:3", source, {"top": 3})
    assert [r["word"] for r in centered.table("words")] == [r["word"] for r in result.table("words")]
    assert centered.table("words")[0]["activation"] == pytest.approx(values.max() - values.mean(), abs=1e-5)


def test_bad_sources(registry, tiny_resnet, tmp_path):
    from mmneurons.images import FolderSource

    (tmp_path / "x.png").write_bytes(b"junk")
    with pytest.raises(ImageLoadError, match="no image could be loaded"):
        registry.get("mmneurons_probes", "dataset_examples").run(tiny_resnet, "layer3:0", FolderSource(tmp_path), {})
    with pytest.raises(ImageLoadError, match="word list is empty"):
        WordSource([])
    with pytest.raises(TypeError, match="takes a WordSource"):
        registry.get("mmneurons_probes", "rendered_words").run(tiny_resnet, "layer3:0", FolderSource(tmp_path), {})


def test_rendered_words_default_list_is_english_by_frequency(registry, tiny_resnet):
    from mmneurons.plugins.probes.rendered_words import default_words

    words = default_words(10_000)
    assert len(words) == 10_000 and words[:3] == ["the", "to", "and"] and all(w.isalpha() for w in words)
    result = registry.get("mmneurons_probes", "rendered_words").run(tiny_resnet, "layer3:3", None,
                                                                   {"n_words": 50, "top": 5})
    assert result.summary["words"] == 50 and set(r["word"] for r in result.table("words")) <= set(words[:50])


def test_skipped_images_are_named_not_only_counted(registry, tiny_resnet, random_images, tmp_path):
    from mmneurons.images import FolderSource

    for i, image in enumerate(random_images[:4]):
        image.save(tmp_path / f"ok{i}.png")
    for name in ("broken.png", "empty.jpg", "zz-truncated.png"):
        (tmp_path / name).write_bytes(b"\x89PNG\r\n" if name != "empty.jpg" else b"")
    result = registry.get("mmneurons_probes", "dataset_examples").run(
        tiny_resnet, "layer3:7", FolderSource(tmp_path), {"k": 2})
    assert result.summary["skipped"] == 3
    [note] = [w for w in result.warnings if "skipped" in w]
    assert note.startswith("3 images skipped: ")
    assert all(name in note for name in ("broken.png", "empty.jpg", "zz-truncated.png"))


def test_the_skipped_note_names_the_first_few_and_counts_the_rest():
    from mmneurons.images import skipped_note

    skipped = [(f"img{i}.png", "corrupt or truncated") for i in range(8)]
    assert skipped_note([]) is None
    assert skipped_note(skipped[:1]) == "1 image skipped: img0.png (corrupt or truncated)"
    note = skipped_note(skipped, first=3)
    assert note.startswith("8 images skipped: img0.png (corrupt or truncated), img1.png")
    assert note.endswith("and 5 more")
