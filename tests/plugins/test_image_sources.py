"""The built-in image source factories ``folder`` and ``words``, driven through the registry."""

from __future__ import annotations

import pytest
from PIL import Image

from mmneurons.params import ParamError, resolve_params


def test_folder_and_words_sources(registry, tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("RGB", (9, 9), (5, 6, 7)).save(tmp_path / "a" / "x.png")
    folder = registry.get("mmneurons_image_sources", "folder")
    source = folder.create(**resolve_params(folder.params, {"path": str(tmp_path)}))
    assert len(source) == 1 and source.record(0).category == "a" and source.load(0).getpixel((0, 0)) == (5, 6, 7)
    (tmp_path / "w.txt").write_text("star\nmoon\n")
    words = registry.get("mmneurons_image_sources", "words")
    source = words.create(**resolve_params(words.params, {"path": str(tmp_path / "w.txt"), "size": "48"}))
    assert len(source) == 2 and source.load(0).size == (48, 48)
    with pytest.raises(ParamError, match="parameter 'size' got 4"):
        resolve_params(words.params, {"path": "w.txt", "size": 4})
