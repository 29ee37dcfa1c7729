"""A word-level tokenizer for the demo model's small caption language.

open_clip pools the text tower at the argmax token id, so end-of-text must be the highest id.
Words outside the vocabulary map to ``<unk>``.
"""

from __future__ import annotations

import re
import string
from typing import Sequence

import torch

SPECIALS = ("<pad>", "<sot>", "<unk>")
_WORD = re.compile(r"[a-z]+")


class WordTokenizer:
    """``texts -> LongTensor[N, context_length]``: ``<sot> words... <eot>``, zero-padded."""

    def __init__(self, vocab: Sequence[str], context_length: int = 12) -> None:
        words = sorted({w.lower() for w in vocab} - set(SPECIALS))
        self.vocab = list(words)
        self.context_length = context_length
        self.ids = {w: i + len(SPECIALS) for i, w in enumerate(self.vocab)}
        self.pad, self.sot, self.unk = 0, 1, 2
        self.eot = len(SPECIALS) + len(self.vocab)  # the highest id: open_clip pools at the argmax

    @property
    def vocab_size(self) -> int:
        return self.eot + 1

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(w, self.unk) for w in _WORD.findall(text.lower())]

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot] + self.encode(text)[: self.context_length - 2] + [self.eot]
            out[row, : len(ids)] = torch.tensor(ids)
        return out

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` this tokenizer cannot read: outside the vocabulary, or with no letter
        it reads at all (``à`` gives no token, not the word)."""
        words = (w.strip(string.punctuation) for w in text.lower().split())
        return [w for w in words if w and (not _WORD.fullmatch(w) or w not in self.ids)]

    def known_words(self) -> list[str]:
        """Every word this tokenizer reads (a closed list, unlike a byte-pair tokenizer's)."""
        return list(self.vocab)

    def to_dict(self) -> dict:
        return {"vocab": self.vocab, "context_length": self.context_length}

    @classmethod
    def from_dict(cls, d: dict) -> "WordTokenizer":
        return cls(d["vocab"], d["context_length"])
