"""Chapter 06 (a decoder-only LLM), its tokenizer: visible cases and the catalogue of
known mistakes of byte-pair encoding.

Behaviours the chapter states, and the case that exercises each:

train_bpe
    no pre-splitting; ties to the pair that  "ties everywhere", "a tie the later pair
    occurs first; merge n makes 256 + n      would win by value", "Shakespeare"
    UTF-8 bytes                              "multi-byte UTF-8"
    stops early when no pair is left         "'aaab' (vocab_size=270): stops early ..."
bpe_encode
    earliest merge first, repeated           every case; "'abcbcbc' with merges ..."
    any text, also one without a pair        "'a' (one byte, no pair to merge) ..."
bpe_decode
    bytes joined, decoded once; invalid      "round trip of multi-byte UTF-8", "cut in
    UTF-8 replaced                           the middle of a character ..."
"""

from __future__ import annotations

import math
from collections import Counter

import torch
from torch import Tensor

from transformer_course import bpe as ref_bpe
from transformer_course.checks.exercise import Case, Exercise, Mistake
from transformer_course.checks.kit import mutant
from transformer_course.checks.registry import register

CHAPTER = "06_llm"

_TEXTS = {
    "ties everywhere": "abab cdcd abab cdcd xyxy",
    "a tie the later pair would win by value": "zz aa zz aa zz aa bb",
    "multi-byte UTF-8": "naïve café, naïve café; 東京 東京 and ½ of ½",
    "Shakespeare": (
        "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to "
        "suffer\nThe slings and arrows of outrageous fortune,\nOr to take arms against a sea "
        "of troubles\nAnd by opposing end them. To die: to sleep;"
    ),
}


def _as_ids(ids: list[int]) -> Tensor:
    return torch.tensor(list(ids), dtype=torch.long)


def _as_merges(merges: list) -> Tensor:
    return torch.tensor([list(p) for p in merges], dtype=torch.long).reshape(-1, 2)


# --------------------------------------------------------------------------- train_bpe


def _train_bpe_cases(seed: int) -> list[Case]:
    sizes = {"ties everywhere": 262, "a tie the later pair would win by value": 259,
             "multi-byte UTF-8": 275, "Shakespeare": 300}
    cases = [Case(f"{name} (vocab_size={sizes[name]})", {"text": text, "vocab_size": sizes[name]})
             for name, text in _TEXTS.items()]
    # Three merges turn "aaab" into a single id; then no pair is left.
    cases.append(Case("'aaab' (vocab_size=270): stops early when no pair is left",
                      {"text": "aaab", "vocab_size": 270}))
    return cases


def _most_common(counts: Counter, ids: list[int]) -> tuple[int, int]:
    return max(counts, key=counts.get)  # the first of the tied pairs; raises when none is left


def _largest(counts: Counter, ids: list[int]) -> tuple[int, int]:
    return max(counts, key=lambda p: (counts[p], p))


def _smallest(counts: Counter, ids: list[int]) -> tuple[int, int]:
    return max(counts, key=lambda p: (counts[p], (-p[0], -p[1])))


def _last_occurrence(counts: Counter, ids: list[int]) -> tuple[int, int]:
    best = max(counts.values())
    return next(p for p in reversed(list(zip(ids[:-1], ids[1:], strict=True))) if counts[p] == best)


def _train(text: str, vocab_size: int, *, pick=_most_common, first_id: int = 256,
           stop_early: bool = True, pre_split: bool = False) -> list[tuple[int, int]]:
    """BPE training with one step switchable: how a pair is picked, the first new id,
    the early stop, and counting inside whitespace-separated words."""
    words = [list(w.encode("utf-8")) for w in text.split()] if pre_split else [list(text.encode("utf-8"))]
    merges = []
    for n in range(vocab_size - 256):
        counts = Counter(p for w in words for p in zip(w[:-1], w[1:], strict=True))
        if stop_early and not counts:
            break
        pair = pick(counts, words[0])
        merges.append(pair)
        words = [ref_bpe.merge_pair(w, pair, first_id + n) for w in words]
    return merges


TRAIN_BPE = Exercise(
    name="train_bpe",
    chapter=CHAPTER,
    reference=ref_bpe.train_bpe,
    make_cases=_train_bpe_cases,
    run=lambda f, a: _as_merges(f(a["text"], a["vocab_size"])),
    outputs=("merges",),
    mistakes=[
        Mistake("ties to the largest pair",
                "BPE ties broken another way: among pairs with the same count you pick the "
                "largest ids; the rule is the pair whose first occurrence comes first in the "
                "current sequence.", mutant(_train, pick=_largest)),
        Mistake("ties to the smallest pair",
                "BPE ties broken another way: among pairs with the same count you pick the "
                "smallest ids; the rule is the pair whose first occurrence comes first in the "
                "current sequence.", mutant(_train, pick=_smallest)),
        Mistake("ties to the last occurrence",
                "BPE ties broken another way: you pick the tied pair that occurs last; the rule "
                "is the one whose first occurrence comes first in the current sequence.",
                mutant(_train, pick=_last_occurrence)),
        Mistake("new ids from 257",
                "Merge n must create id 256 + n (the first merge is 256, right after the "
                "bytes 0..255).", mutant(_train, first_id=257)),
        Mistake("pre-split into words",
                "You count pairs inside whitespace-separated words; this BPE works on the "
                "bytes of the whole text, spaces included, with no pre-splitting.",
                mutant(_train, pre_split=True)),
        Mistake("no early stop",
                "When the whole text has become one id there is no pair left to count, and "
                "max() of an empty Counter raises: stop training early (break) when the "
                "Counter is empty, returning fewer than vocab_size - 256 merges.",
                mutant(_train, stop_early=False)),
    ],
)

# --------------------------------------------------------------------------- bpe_encode


def _encode_cases(seed: int) -> list[Case]:
    cases = []
    for (name, text), (probe, size) in zip(
        _TEXTS.items(),
        [("abcd xyab cdab", 262), ("zz aa bb zzaa", 259), ("café naïve 東京", 275),
         ("To be or not to be, to sleep: that is the question", 300)],
        strict=True,
    ):
        merges = [list(p) for p in ref_bpe.train_bpe(text, size)]
        cases.append(Case(f"{probe!r} with merges trained on {name}",
                          {"text": probe, "merges": merges}))
    # (a, b) was merged first, (b, c) is the more frequent pair in the probe: merge order
    # gives [256, c, 257, 257], frequency order would give [a, 257, 257, 257].
    cases.append(Case("'abcbcbc' with merges (a, b) -> 256, (b, c) -> 257, (256, 257) -> 258",
                      {"text": "abcbcbc", "merges": [[97, 98], [98, 99], [256, 257]]}))
    cases.append(Case("'a' (one byte, no pair to merge) with merges (a, b) -> 256",
                      {"text": "a", "merges": [[97, 98]]}))
    return cases




def _earliest(ids: list[int], rank: dict) -> tuple[int, int] | None:
    present = [p for p in zip(ids[:-1], ids[1:], strict=True) if p in rank]
    return min(present, key=rank.__getitem__) if present else None


def _latest(ids: list[int], rank: dict) -> tuple[int, int] | None:
    present = [p for p in zip(ids[:-1], ids[1:], strict=True) if p in rank]
    return max(present, key=rank.__getitem__) if present else None


def _most_frequent(ids: list[int], rank: dict) -> tuple[int, int] | None:
    counts = Counter(p for p in zip(ids[:-1], ids[1:], strict=True) if p in rank)
    return counts.most_common(1)[0][0] if counts else None


def _earliest_unguarded(ids: list[int], rank: dict) -> tuple[int, int] | None:
    pair = min(zip(ids[:-1], ids[1:], strict=True), key=lambda p: rank.get(p, math.inf))  # raises on < 2 ids
    return pair if pair in rank else None


def _encode(text: str, merges: list, *, pick=_earliest, repeat: bool = True) -> list[int]:
    """BPE encoding with one step switchable: which mergeable pair goes first, and
    whether merging repeats."""
    rank = {tuple(p): n for n, p in enumerate(merges)}
    ids = list(text.encode("utf-8"))
    while (pair := pick(ids, rank)) is not None:
        ids = ref_bpe.merge_pair(ids, pair, 256 + rank[pair])
        if not repeat:
            break
    return ids


ENCODE = Exercise(
    name="bpe_encode",
    chapter=CHAPTER,
    reference=ref_bpe.bpe_encode,
    make_cases=_encode_cases,
    run=lambda f, a: _as_ids(f(a["text"], [tuple(p) for p in a["merges"]])),
    outputs=("ids",),
    mistakes=[
        Mistake("frequency order",
                "bpe_encode applies merges in frequency order (the most common pair in the "
                "text first); apply the present pair with the earliest merge (lowest index) "
                "first, as training did.", mutant(_encode, pick=_most_frequent)),
        Mistake("latest merge first",
                "You apply the present pair with the latest merge first; apply the earliest "
                "(lowest index) first.", mutant(_encode, pick=_latest)),
        Mistake("only one merge",
                "You stop after one merge; repeat until no pair of the sequence is in the "
                "merge list.", mutant(_encode, repeat=False)),
        Mistake("no pair in a short text",
                "A text of one byte (or none) has no adjacent pair, and min() of an empty set "
                "raises: loop only while len(ids) >= 2, and stop when no pair is mergeable.",
                mutant(_encode, pick=_earliest_unguarded)),
    ],
)

# --------------------------------------------------------------------------- bpe_decode


def _decode_cases(seed: int) -> list[Case]:
    text = _TEXTS["multi-byte UTF-8"]
    merges = ref_bpe.train_bpe(text, 275)
    ids = ref_bpe.bpe_encode(text, merges)
    shakespeare = _TEXTS["Shakespeare"]
    s_merges = ref_bpe.train_bpe(shakespeare, 300)
    raw = list("½ café".encode())
    return [
        Case("round trip of Shakespeare", {"ids": ref_bpe.bpe_encode(shakespeare, s_merges),
                                           "merges": [list(p) for p in s_merges]}),
        Case("round trip of multi-byte UTF-8", {"ids": ids, "merges": [list(p) for p in merges]}),
        Case("bytes only, no merges: 'café ½'", {"ids": raw, "merges": []}),
        Case("cut in the middle of a character (invalid UTF-8 is replaced)",
             {"ids": raw[:1] + raw[3:5], "merges": []}),
    ]


def _decode_text(text: str) -> Tensor:
    return torch.tensor([ord(c) for c in text], dtype=torch.long)


def _vocab(merges):
    vocab = {i: bytes([i]) for i in range(256)}
    for n, (a, b) in enumerate(merges):
        vocab[256 + n] = vocab[a] + vocab[b]
    return vocab


def _decode_per_token(ids, merges):
    vocab = _vocab(merges)
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)


def _decode_ignore(ids, merges):
    return b"".join(_vocab(merges)[i] for i in ids).decode("utf-8", errors="ignore")


def _decode_latin1(ids, merges):
    return b"".join(_vocab(merges)[i] for i in ids).decode("latin-1")


DECODE = Exercise(
    name="bpe_decode",
    chapter=CHAPTER,
    reference=ref_bpe.bpe_decode,
    make_cases=_decode_cases,
    run=lambda f, a: _decode_text(f(a["ids"], [tuple(p) for p in a["merges"]])),
    outputs=("code_points",),
    mistakes=[
        Mistake("decodes each token separately",
                "You decode every token on its own; a multi-byte character can be split "
                "across tokens. Join all the bytes first, then decode once.", _decode_per_token),
        Mistake("invalid bytes dropped",
                "Invalid UTF-8 is dropped (errors='ignore'); replace it with U+FFFD "
                "(errors='replace').", _decode_ignore),
        Mistake("latin-1",
                "The bytes are decoded as Latin-1; they are UTF-8.", _decode_latin1),
    ],
)

register(TRAIN_BPE, ENCODE, DECODE)
