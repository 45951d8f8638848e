"""The bundled corpus (about 1 MB of Shakespeare), a character tokenizer, a
train/validation split and random training batches.

Everything is read from package data (see ``data/SHAKESPEARE.md`` for its origin and
licence); nothing is downloaded. Chapter 6 trains on it and chapter 9 measures a
scaling curve on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import torch
from torch import Tensor

CORPUS_FILE = "shakespeare.txt"


def load_text() -> str:
    """The whole bundled corpus as one string (ASCII, about a million characters)."""
    return resources.files("transformer_course").joinpath("data", CORPUS_FILE).read_text("utf-8")


class CharTokenizer:
    """One token per character: the ids are the positions of the characters in the
    sorted set of characters of the text it was built from.

    Args:
        text: the text whose characters form the vocabulary.
    """

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self._ids = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; raises ValueError for a character not in the vocabulary."""
        try:
            return [self._ids[c] for c in text]
        except KeyError as err:
            raise ValueError(
                f"character {err.args[0]!r} is not in this tokenizer's vocabulary "
                f"({self.vocab_size} characters); use only characters of the corpus"
            ) from None

    def decode(self, ids: list[int] | Tensor) -> str:
        """The text of a sequence of token ids (a list or a 1-D tensor)."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return "".join(self.chars[i] for i in ids)


@dataclass
class Corpus:
    """A tokenized corpus: the text, its tokenizer and two 1-D LongTensors of ids."""

    text: str
    tokenizer: CharTokenizer
    train: Tensor
    val: Tensor


def train_val_split(
    data: Tensor, val_fraction: float = 0.1, chunk: int = 10_000
) -> tuple[Tensor, Tensor]:
    """Split a 1-D token tensor into training and validation tokens, chunk by chunk.

    The data is cut into consecutive chunks of ``chunk`` tokens and every
    ``1 / val_fraction``-th chunk goes to validation, so validation text comes from all
    eight plays, like the training text. (Holding out only the end of the corpus would
    measure how well the model knows the last play's style, not how well it has learned
    Shakespeare.) Each part keeps its chunks in order.

    Returns:
        ``(train, val)``, 1-D tensors whose lengths add up to ``len(data)``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    chunk_id = torch.arange(len(data)) // chunk
    # Chunk i is validation when the running count of val_fraction * chunks steps up.
    is_val = torch.floor((chunk_id + 1) * val_fraction) > torch.floor(chunk_id * val_fraction)
    return data[~is_val], data[is_val]


def load_corpus(val_fraction: float = 0.1) -> Corpus:
    """The bundled corpus, tokenized by characters and split into train and validation."""
    text = load_text()
    tokenizer = CharTokenizer(text)
    data = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    train, val = train_val_split(data, val_fraction)
    return Corpus(text, tokenizer, train, val)


def get_batch(
    data: Tensor, batch_size: int, block_size: int, generator: torch.Generator | None = None
) -> Tensor:
    """``batch_size`` windows of ``block_size`` consecutive tokens at random offsets.

    Args:
        data: 1-D LongTensor of token ids.
        batch_size: number of windows ``B``.
        block_size: window length ``L``; ``next_token_loss`` predicts its last ``L - 1``
            tokens from the ones before.
        generator: for reproducible batches.

    Returns:
        LongTensor ``(B, L)``.
    """
    if len(data) < block_size:
        raise ValueError(f"data has {len(data)} tokens, fewer than block_size={block_size}")
    starts = torch.randint(len(data) - block_size + 1, (batch_size,), generator=generator)
    return torch.stack([data[s : s + block_size] for s in starts.tolist()])
