"""A translation-like task generated in code: written dates into ISO form.

``"3rd of March 2021"``, ``"March 3, 2021"``, ``"03/03/2021"`` ... all become
``"2021-03-03"``. Numeric dates are day first (``DD/MM/YYYY``, as in most of the world).
Sources and targets are read character by character, so the "vocabulary" is an
alphabet plus three special tokens. Held-out dates are disjoint from training dates:
a date belongs to the test split when its day number (``date.toordinal()``) is a
multiple of 10, so no test date is ever seen in training, in any format.
"""

from __future__ import annotations

import calendar
import datetime as dt
import random
import string
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from transformer_course.attention import padding_mask
from transformer_course.decoder import greedy_decode
from transformer_course.device import model_device
from transformer_course.training import speed_switch

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
FIRST_YEAR, LAST_YEAR = 1950, 2049
MONTHS = list(calendar.month_name)[1:]


def ordinal(day: int) -> str:
    """``1 -> "1st"``, ``2 -> "2nd"``, ``11 -> "11th"``, ``23 -> "23rd"``."""
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _month(d: dt.date) -> str:
    return MONTHS[d.month - 1]


FORMATS: dict[str, Callable[[dt.date], str]] = {
    "3rd of March 2021": lambda d: f"{ordinal(d.day)} of {_month(d)} {d.year}",
    "March 3, 2021": lambda d: f"{_month(d)} {d.day}, {d.year}",
    "03/03/2021": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",
    "3 March 2021": lambda d: f"{d.day} {_month(d)} {d.year}",
    "Mar 3, 2021": lambda d: f"{_month(d)[:3]} {d.day}, {d.year}",
    "3 Mar 2021": lambda d: f"{d.day} {_month(d)[:3]} {d.year}",
    "Wednesday, March 3, 2021": lambda d: f"{d.strftime('%A')}, {_month(d)} {d.day}, {d.year}",
    "3.3.2021": lambda d: f"{d.day}.{d.month}.{d.year}",
    "march 3rd 2021": lambda d: f"{_month(d).lower()} {ordinal(d.day)} {d.year}",
    "03-MAR-2021": lambda d: f"{d.day:02d}-{_month(d)[:3].upper()}-{d.year}",
    "the 3rd of march, 2021": lambda d: f"the {ordinal(d.day)} of {_month(d).lower()}, {d.year}",
}
"""Each written style, named by an example, and the function that writes a date in it."""


def iso(d: dt.date) -> str:
    """The target: ``YYYY-MM-DD``."""
    return d.isoformat()


def in_split(d: dt.date, split: str) -> bool:
    """Whether ``d`` belongs to ``split`` (``"train"`` or ``"test"``)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    held_out = d.toordinal() % 10 == 0
    return held_out if split == "test" else not held_out


def random_pairs(n: int, split: str = "train", seed: int | None = None,
                 rng: random.Random | None = None) -> list[tuple[str, str]]:
    """``n`` (written date, ISO date) pairs of ``split``, each in a random style.

    Args:
        n: number of pairs.
        split: ``"train"`` or ``"test"`` (disjoint sets of dates).
        seed: seeds a fresh random generator (ignored when ``rng`` is given).
        rng: a ``random.Random`` to draw from, for a stream of batches.
    """
    rng = rng or random.Random(seed)
    first = dt.date(FIRST_YEAR, 1, 1).toordinal()
    last = dt.date(LAST_YEAR, 12, 31).toordinal()
    styles = list(FORMATS.values())
    pairs = []
    while len(pairs) < n:
        d = dt.date.fromordinal(rng.randint(first, last))
        if in_split(d, split):
            pairs.append((rng.choice(styles)(d), iso(d)))
    return pairs


class CharVocab:
    """Characters to ids and back, with ``<pad>`` = 0, ``<bos>`` = 1 and ``<eos>`` = 2.

    Args:
        chars: the characters the vocabulary knows (order sets the ids).
    """

    def __init__(self, chars: str):
        self.itos = [PAD, BOS, EOS, *dict.fromkeys(chars)]
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, bos_eos: bool = False) -> list[int]:
        """Ids of ``text``'s characters (wrapped in ``<bos>`` ... ``<eos>`` if asked).

        Raises:
            ValueError: for a character the vocabulary does not know.
        """
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(f"characters {unknown} are not in the vocabulary; use only {self.itos[3:]}")
        ids = [self.stoi[c] for c in text]
        return [self.bos_id, *ids, self.eos_id] if bos_eos else ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, stopping at the first ``<eos>`` and skipping ``<bos>``/``<pad>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                out.append(self.itos[i])
        return "".join(out)

    def tokens(self, ids: Sequence[int]) -> list[str]:
        """Each id as a readable token (for plot labels)."""
        return [self.itos[int(i)] for i in ids]


SRC_VOCAB = CharVocab(string.ascii_letters + string.digits + " ,./-")
TGT_VOCAB = CharVocab(string.digits + "-")


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad id lists into ``(B, L_max)`` and return it with the lengths ``(B,)``."""
    lengths = torch.tensor([len(s) for s in seqs])
    out = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for row, seq in enumerate(seqs):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out, lengths


def make_batch(pairs: Sequence[tuple[str, str]],
               mask: Callable[[Tensor, int], Tensor] = padding_mask) -> tuple[Tensor, Tensor, Tensor]:
    """Tensors for a list of (source, target) pairs.

    Args:
        pairs: (written date, ISO date) pairs.
        mask: a ``padding_mask(lengths (B,), max_len) -> (B, 1, max_len)`` function
            (yours, from :mod:`transformer_course.mine`); the course's reference by default.

    Returns:
        ``src (B, L_src)`` character ids (right-padded), ``tgt (B, L_tgt)`` with
        ``<bos>`` first and ``<eos>`` last, and ``src_mask (B, 1, L_src)`` (True at
        real characters).
    """
    src, src_len = pad_batch([SRC_VOCAB.encode(s) for s, _ in pairs], SRC_VOCAB.pad_id)
    tgt, _ = pad_batch([TGT_VOCAB.encode(t, bos_eos=True) for _, t in pairs], TGT_VOCAB.pad_id)
    return src, tgt, mask(src_len, src.size(1))


def translate(model, sources: Sequence[str], decode: Callable = greedy_decode, max_len: int = 12,
              batch_size: int = 500, fused: bool = False,
              mask: Callable[[Tensor, int], Tensor] = padding_mask) -> list[str]:
    """Greedy-decode written dates with a trained ``Transformer`` (switched to eval mode).

    Args:
        model: the trained model.
        sources: written dates.
        decode: a ``greedy_decode`` function (yours); the course's reference by default.
        max_len: longest output counting ``<bos>`` (an ISO date is 10 characters + 2).
        batch_size: sources decoded at once.
        fused: run attention and LayerNorms through PyTorch's fused kernels
            (:func:`~transformer_course.training.speed_switch`) and print what ran
            fused; False: the model's code as written.
        mask: a ``padding_mask`` function (yours); the course's reference by default.

    Returns:
        The ISO strings the model wrote.
    """
    model.eval()
    device = model_device(model)
    out = []
    with speed_switch(model, fused) as report:
        for start in range(0, len(sources), batch_size):
            chunk = sources[start : start + batch_size]
            src, src_len = pad_batch([SRC_VOCAB.encode(s) for s in chunk], SRC_VOCAB.pad_id)
            ids = decode(model, src.to(device), max_len, TGT_VOCAB.bos_id, TGT_VOCAB.eos_id,
                         mask(src_len, src.size(1)).to(device))
            out += [TGT_VOCAB.decode(row) for row in ids]
    if report is not None:
        print(report)
    return out


def exact_match(predictions: Sequence[str], targets: Sequence[str]) -> float:
    """Fraction of predictions equal to their target, character for character."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    return sum(p == t for p, t in zip(predictions, targets, strict=True)) / len(targets)
