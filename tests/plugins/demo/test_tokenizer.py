"""The demo tokenizer: end-of-text is the highest id (open_clip pools at the argmax)."""

from __future__ import annotations

import torch

from mmneurons.plugins.demo.captions import TEMPLATES, vocabulary
from mmneurons.plugins.demo.tokenizer import WordTokenizer


def test_eot_is_the_argmax_and_unknown_words_map_to_unk():
    tok = WordTokenizer(vocabulary(), context_length=8)
    ids = tok(["a photo of a star", "kitten"])
    assert ids.shape == (2, 8)
    assert ids.argmax(dim=1).tolist() == [6, 2]  # <sot> a photo of a star <eot>
    assert int(ids.max()) == tok.eot == tok.vocab_size - 1
    assert ids[1, 1] == tok.unk and tok.unknown_words("a kitten") == ["kitten"]


def test_long_texts_are_cut_before_eot_and_round_trip():
    tok = WordTokenizer(["star"], context_length=4)
    assert tok(["star star star star star"]).tolist() == [[tok.sot, 3, 3, tok.eot]]
    again = WordTokenizer.from_dict(tok.to_dict())
    assert torch.equal(again(["star"]), tok(["star"]))


def test_every_template_word_is_known():
    tok = WordTokenizer(vocabulary())
    for template in TEMPLATES:
        assert tok.unknown_words(template.format("star")) == []
