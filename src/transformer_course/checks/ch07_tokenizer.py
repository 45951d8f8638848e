"""Chapter 7 (train it yourself), its tokenizer: visible cases and the catalogue of
known mistakes of byte-level BPE with pre-tokenization and special tokens.

Behaviours the chapter states, and the case that exercises each:

Tokenizer
    merges only inside a piece              "a whitespace run ...", every case
    lowest rank first, repeated             every case
    special tokens whole, longest first     "special tokens ...", "<s><s> before <s>"
    SmolLM2's pattern: digits one by one    "SmolLM2's pattern ..."
    decode joins bytes, replaces invalid    "decode: a character cut in two ..."
train_tokenizer
    ties to the greatest pair of bytes      "ties everywhere"
    counts weighted by piece frequency      "Shakespeare"
    special tokens cut out, ids after the   "special tokens ..."
    merges
    stops when no pair is left              "'aaab' ..."
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import regex
import torch
from torch import Tensor

from transformer_course import tokenizer as ref
from transformer_course.bpe import merge_pair
from transformer_course.checks.exercise import Case, Exercise, Mistake
from transformer_course.checks.kit import mutant
from transformer_course.checks.registry import register

CHAPTER = "07_training"
_PATTERNS = {"gpt2": ref.GPT2_PATTERN, "smollm2": ref.SMOLLM2_PATTERN}


def _pattern(a: dict[str, Any]) -> tuple[str, ...]:
    """The pattern argument of a case: none at all for "default", so that a case calls the
    student's code with the signature's own default (which must be GPT-2's pattern)."""
    return () if a["pattern"] == "default" else (_PATTERNS[a["pattern"]],)

_SHAKESPEARE = (
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n\n"
    "And by opposing end them. To die:  to sleep;\n  No more; and by a sleep to say we end\n"
)
_SPECIAL_TEXT = ("the cat sat<|endoftext|>the cat ran<|endoftext|><|endoftext|>the dog sat on the "
                 "cat<|pad|>the end")
_NUMBERS = "In 1999 and 2024, 12 cats ate 345 fish; 1000 more in 2025 and 10 in 1999."
_UTF8 = "naïve café, naïve café; 東京 東京 and ½ of ½ 🤗🤗"


def _flat_bytes(tokens: list[bytes]) -> Tensor:
    """Byte strings as one tensor: each string's length, then its bytes."""
    return torch.tensor([x for t in tokens for x in (len(t), *t)], dtype=torch.long)


def _with_separators(seqs: list[list[int]]) -> Tensor:
    return torch.tensor([x for s in seqs for x in (*s, -1)], dtype=torch.long)


# --------------------------------------------------------------------------- Tokenizer


def _tokenizer_cases(seed: int) -> list[Case]:
    def trained(text, size, specials=(), pattern="gpt2"):
        vocab, merges = ref.train_tokenizer(text, size, list(specials), _PATTERNS[pattern])
        return {"vocab": [list(vocab[i]) for i in range(len(vocab))],
                "merges": [[list(a), list(b)] for a, b in merges], "special_tokens": list(specials),
                "pattern": pattern}

    bytes_only = [[i] for i in range(256)]
    return [
        Case("merges trained on Shakespeare, a whitespace run and words it has not seen",
             {**trained(_SHAKESPEARE, 330), "decode_ids": [],
              "texts": ["To be  or not\n\n to sleep, thee.", "Whether 'tis nobler", "the   slings"]}),
        Case("special tokens '<|endoftext|>' and '<|pad|>' are never split",
             {**trained(_SPECIAL_TEXT, 300, ["<|endoftext|>", "<|pad|>"]),
              "texts": ["the cat<|endoftext|>sat<|pad|><|pad|>", "<|endoftext|>", "the <|pad|>dog"],
              "decode_ids": []}),
        Case("special tokens '<s>' and '<s><s>': the longest first",
             {**trained("ab ab abab <s>ab<s><s>ab", 270, ["<s>", "<s><s>"]),
              "texts": ["ab<s><s><s>ab", "<s>ab <s><s>"], "decode_ids": []}),
        Case("SmolLM2's pattern: digits one by one, whitespace before a digit kept whole",
             {**trained(_NUMBERS, 290, pattern="smollm2"), "texts": ["In  2024 and 1999, 12 more.", "x 7"],
              "decode_ids": []}),
        Case("multi-byte UTF-8; decode: a character cut in two is replaced",
             {**trained(_UTF8, 280), "texts": ["café 東京 ½ 🤗"], "decode_ids": list("é ½".encode())[:-1]}),
        Case("hand-made merges (c, ' ') -> 'c ' (never inside a piece), (b, c) -> 'bc', then (a, b); "
             "no pattern given: the default is GPT-2's",
             {"vocab": [*bytes_only, list(b"c "), list(b"bc"), list(b"ab")],
              "merges": [[[99], [32]], [[98], [99]], [[97], [98]]],
              "special_tokens": [], "pattern": "default", "texts": ["abc abcbc cab"], "decode_ids": []}),
    ]


def _run_tokenizer(cls: Any, a: dict[str, Any]) -> tuple[Tensor, Tensor]:
    vocab = {i: bytes(b) for i, b in enumerate(a["vocab"])}
    merges = [(bytes(x), bytes(y)) for x, y in a["merges"]]
    tok = cls(vocab, merges, a["special_tokens"], *_pattern(a))
    ids = [list(tok.encode(text)) for text in a["texts"]]
    decoded = [tok.decode(i) for i in ids]
    if a["decode_ids"]:
        decoded.append(tok.decode(a["decode_ids"]))
    return _with_separators(ids), _with_separators([[ord(c) for c in s] for s in decoded])


class _TokenizerMutant(ref.Tokenizer):
    """The reference tokenizer with one step done wrong (a flag)."""

    pre_split = True
    specials = "longest"  # or "shortest", or None (treated as text)
    order = "rank"  # or "leftmost": the first mergeable pair in the piece
    per_token_decode = False

    def pretokenize(self, text):
        if self.specials is None or not self.special_tokens:
            chunks = [text]
        else:
            ordered = sorted(self.special_tokens, key=len, reverse=self.specials == "longest")
            chunks = regex.split("(" + "|".join(regex.escape(s) for s in ordered) + ")", text)
        pieces = []
        for i, chunk in enumerate(chunks):
            if i % 2:
                pieces.append(chunk)
            elif chunk:
                pieces.extend(self.pattern.findall(chunk) if self.pre_split else [chunk])
        return pieces

    def encode(self, text):
        special = set(self.special_tokens) if self.specials else set()
        return [i for piece in self.pretokenize(text)
                for i in ([self.ids[piece.encode()]] if piece in special else self.encode_piece(piece))]

    def encode_piece(self, piece):
        if self.order == "rank":
            return super().encode_piece(piece)
        parts = [bytes([b]) for b in piece.encode()]
        while True:
            pair = next((p for p in zip(parts, parts[1:], strict=False) if p in self.rank), None)
            if pair is None:
                return [self.ids[p] for p in parts]
            parts = merge_pair(parts, pair, pair[0] + pair[1])

    def decode(self, ids):
        if self.per_token_decode:
            return "".join(self.vocab[i].decode("utf-8", errors="replace") for i in ids)
        return super().decode(ids)


TOKENIZER = Exercise(
    name="Tokenizer",
    chapter=CHAPTER,
    reference=ref.Tokenizer,
    make_cases=_tokenizer_cases,
    run=_run_tokenizer,
    outputs=("ids", "decoded"),
    mistakes=[
        Mistake("no pre-tokenization",
                "You merge across the whole text; cut it into pieces with the pattern first "
                "(self.pattern.findall) and merge only inside a piece.",
                mutant(_TokenizerMutant, pre_split=False)),
        Mistake("special tokens split",
                "A special token was cut into pieces and merged like text; cut the special "
                "tokens out first, and give each one its own id.", mutant(_TokenizerMutant, specials=None)),
        Mistake("shortest special token first",
                "Where one special token contains another ('<s>' and '<s><s>'), match the "
                "longest first: sort them by length, descending, in the alternation.",
                mutant(_TokenizerMutant, specials="shortest")),
        Mistake("leftmost pair first",
                "You merge the leftmost mergeable pair; merge the pair with the lowest rank "
                "(the earliest merge), wherever it is in the piece.",
                mutant(_TokenizerMutant, order="leftmost")),
        Mistake("decodes each token separately",
                "A character of several bytes can be split across tokens: join all the bytes, "
                "then decode once.", mutant(_TokenizerMutant, per_token_decode=True)),
    ],
)

# --------------------------------------------------------------------------- train_tokenizer


def _train_cases(seed: int) -> list[Case]:
    return [
        Case("ties everywhere (vocab_size=262); no pattern given: the default is GPT-2's",
             {"text": "abab cdcd abab cdcd xyxy", "vocab_size": 262, "special_tokens": [],
              "pattern": "default"}),
        Case("Shakespeare (vocab_size=320)", {"text": _SHAKESPEARE, "vocab_size": 320, "special_tokens": [],
                                              "pattern": "gpt2"}),
        Case("special tokens '<|endoftext|>' and '<|pad|>' (vocab_size=300)",
             {"text": _SPECIAL_TEXT, "vocab_size": 300, "special_tokens": ["<|endoftext|>", "<|pad|>"],
              "pattern": "gpt2"}),
        Case("SmolLM2's pattern on numbers (vocab_size=290)", {"text": _NUMBERS, "vocab_size": 290,
                                                               "special_tokens": [], "pattern": "smollm2"}),
        Case("multi-byte UTF-8 (vocab_size=280)", {"text": _UTF8, "vocab_size": 280, "special_tokens": [],
                                                   "pattern": "gpt2"}),
        Case("'aaab' with '<e>' (vocab_size=280): stops early when no pair is left",
             {"text": "aaab<e>", "vocab_size": 280, "special_tokens": ["<e>"], "pattern": "gpt2"}),
    ]


def _run_train(f: Any, a: dict[str, Any]) -> tuple[Tensor, Tensor]:
    vocab, merges = f(a["text"], a["vocab_size"], a["special_tokens"], *_pattern(a))
    return (_flat_bytes([bytes(t) for pair in merges for t in pair]),
            _flat_bytes([bytes(vocab[i]) for i in range(len(vocab))]))


def _train(text, vocab_size, special_tokens=None, pattern=ref.GPT2_PATTERN, *, tie="greatest",
           pre_split=True, drop_specials=True, weighted=True, specials_first=False):
    """Plain (not incremental) BPE training with one rule switchable."""
    specials = list(special_tokens or [])
    if specials and drop_specials:
        chunks = regex.split("|".join(regex.escape(s) for s in specials), text)
    else:
        chunks = [text]
    pieces = [p for c in chunks for p in (regex.findall(pattern, c) if pre_split else [c]) if p]
    counts = Counter(pieces)
    words = {tuple(bytes([b]) for b in w.encode()): (n if weighted else 1) for w, n in counts.items()}
    merges = []
    for _ in range(vocab_size - 256 - len(specials)):
        pairs: Counter = Counter()
        for w, n in words.items():
            for p in zip(w, w[1:], strict=False):
                pairs[p] += n
        if not pairs:
            break
        best = max(pairs.values())
        tied = [p for p in pairs if pairs[p] == best]
        pair = {"greatest": max, "smallest": min, "first": lambda t: t[0]}[tie](tied)
        merges.append(pair)
        words = {tuple(merge_pair(list(w), pair, pair[0] + pair[1])): n for w, n in words.items()}
    tokens = [bytes([i]) for i in range(256)] + [a + b for a, b in merges]
    special_bytes = [s.encode() for s in specials]
    tokens = special_bytes + tokens if specials_first else tokens + special_bytes
    return dict(enumerate(tokens)), merges


TRAIN_TOKENIZER = Exercise(
    name="train_tokenizer",
    chapter=CHAPTER,
    reference=ref.train_tokenizer,
    make_cases=_train_cases,
    run=_run_train,
    outputs=("merges", "vocab"),
    mistakes=[
        Mistake("ties to the smallest pair",
                "Among pairs with the same count you pick the smallest; the rule is the "
                "lexicographically greatest pair of byte strings (max over (left, right)).",
                mutant(_train, tie="smallest")),
        Mistake("ties to the first pair counted",
                "Among pairs with the same count you pick the first one found (chapter 6's "
                "rule); here a tie goes to the lexicographically greatest pair of byte strings.",
                mutant(_train, tie="first")),
        Mistake("no pre-tokenization",
                "You count pairs across the whole text; cut it into pieces with the pattern "
                "first, and count pairs only inside a piece.", mutant(_train, pre_split=False)),
        Mistake("special tokens trained on",
                "The special tokens' text took part in training; cut them out of the text "
                "first (they are whole tokens of their own).", mutant(_train, drop_specials=False)),
        Mistake("pieces counted once",
                "Each distinct piece counts once; a pair's count is weighted by how often its "
                "piece occurs in the text.", mutant(_train, weighted=False)),
        Mistake("special tokens first",
                "The special tokens get the first ids; ids 0..255 are the bytes, then the "
                "merges, then the special tokens in the order given.", mutant(_train, specials_first=True)),
    ],
)

register(TOKENIZER, TRAIN_TOKENIZER)
