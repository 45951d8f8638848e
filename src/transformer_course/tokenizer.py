"""Chapter 7: a real byte-level BPE tokenizer, as GPT-2 and today's open models use.

Chapter 6's BPE merges across the whole text, so one token can swallow the end of one
word and the start of the next. Real tokenizers first cut the text into pieces with a
regular expression (GPT-2's splits off words with their leading space, runs of digits,
runs of punctuation and whitespace) and merge bytes only inside a piece. Special tokens
such as ``<|endoftext|>`` are cut out before that and never split: each is one id.

The vocabulary maps ids to byte strings and the merges are pairs of byte strings, in
the order they were learned (rank 0 first), so the same code encodes with a
vocabulary trained here and with a real model's.

Training counts pieces once, with their frequency, and keeps the count of every
adjacent pair up to date as merges happen: a merge touches only the pieces that
contain its pair, and only their pairs' counts change. That incremental update, and a
heap that finds the most frequent pair without scanning all of them, make training
fast (``scripts/benchmark_bpe.py``).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from functools import cache

import regex

from transformer_course.bpe import merge_pair

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""GPT-2's pre-tokenizer: contractions, words with their leading space, numbers,
punctuation runs, and whitespace (the last space before a word stays with the word)."""

SMOLLM2_PATTERN = r"""\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"""
"""SmolLM2's pre-tokenizer in one expression: GPT-2's, with every digit a piece of its
own (so numbers are read digit by digit) and whitespace before a digit kept whole, as
the pieces its tokenizer cuts at every digit first would keep it."""


def special_splitter(special_tokens: list[str]) -> regex.Pattern | None:
    """A pattern that finds special tokens, the longest first where one contains another."""
    if not special_tokens:
        return None
    longest_first = sorted(special_tokens, key=len, reverse=True)
    return regex.compile("(" + "|".join(regex.escape(s) for s in longest_first) + ")")


class Tokenizer:
    """Byte-level BPE with regex pre-tokenization and special tokens.

    Args:
        vocab: ``{id: bytes}``; holds every single byte, every merge's result and the
            UTF-8 bytes of every special token.
        merges: ``[(left, right), ...]`` byte strings in merge order; ``left + right``
            is in ``vocab``.
        special_tokens: strings that are always one token, never split or merged.
        pattern: the pre-tokenization regular expression (``regex`` syntax).

    Encoding: cut out the special tokens (the longest first where they overlap); cut the
    text between them into pieces with ``pattern``; in each piece, start from its UTF-8
    bytes and repeatedly merge the adjacent pair with the lowest rank (every
    occurrence, left to right) until no pair of the piece is in ``merges``. Decoding
    joins the tokens' bytes and decodes them as UTF-8, replacing invalid sequences.
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: list[tuple[bytes, bytes]],
        special_tokens: list[str] | None = None,
        pattern: str = GPT2_PATTERN,
    ):
        ### BEGIN SOLUTION
        self.vocab = dict(vocab)
        self.merges = [tuple(m) for m in merges]
        self.special_tokens = list(special_tokens or [])
        self.ids = {}
        for i in sorted(self.vocab):
            self.ids.setdefault(self.vocab[i], i)  # the lowest id wins a duplicate
        self.rank = {pair: n for n, pair in enumerate(self.merges)}
        self.splitter = special_splitter(self.special_tokens)
        self.pattern = regex.compile(pattern)
        self.cache: dict[str, list[int]] = {}  # text repeats its pieces: encode each once
        ### END SOLUTION

    def pretokenize(self, text: str) -> list[str]:
        """The pieces of ``text``: special tokens whole, the rest cut by ``pattern``;
        joined, they give back ``text``."""
        ### BEGIN SOLUTION
        chunks = self.splitter.split(text) if self.splitter else [text]
        pieces = []
        for i, chunk in enumerate(chunks):
            if i % 2:  # split() with a group puts the separators at odd positions
                pieces.append(chunk)
            else:
                pieces.extend(self.pattern.findall(chunk))
        return pieces
        ### END SOLUTION

    def encode_piece(self, piece: str) -> list[int]:
        """The ids of one piece (not a special token): its bytes, merged by rank."""
        ### BEGIN SOLUTION
        parts = [bytes([b]) for b in piece.encode("utf-8")]
        while len(parts) > 1:
            pair = min(zip(parts, parts[1:], strict=False), key=lambda p: self.rank.get(p, len(self.rank)))
            if pair not in self.rank:
                break
            parts = merge_pair(parts, pair, pair[0] + pair[1])
        return [self.ids[p] for p in parts]
        ### END SOLUTION

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        ### BEGIN SOLUTION
        special = set(self.special_tokens)
        ids = []
        for piece in self.pretokenize(text):
            if piece in special:
                ids.append(self.ids[piece.encode("utf-8")])
            else:
                if piece not in self.cache:
                    self.cache[piece] = self.encode_piece(piece)
                ids.extend(self.cache[piece])
        return ids
        ### END SOLUTION

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids``: their bytes joined, decoded as UTF-8 (invalid bytes become
        U+FFFD)."""
        ### BEGIN SOLUTION
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")
        ### END SOLUTION


def descending_key(token: bytes) -> tuple[int, ...]:
    """A key that sorts byte strings in reverse lexicographic order (a prefix after
    every longer string that extends it), so a min-heap pops the greatest first."""
    return (*(255 - b for b in token), 256)


def train_tokenizer(
    text: str, vocab_size: int, special_tokens: list[str] | None = None, pattern: str = GPT2_PATTERN
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Learn a byte-level BPE vocabulary on ``text``.

    The rules, exact enough that every correct implementation learns the same merges:

    - the special tokens are cut out of the text and take no part in training; the text
      between them is cut into pieces by ``pattern``, and pairs never cross a piece;
    - each step merges the adjacent pair with the highest count over all pieces
      (``"aaa"`` holds ``(a, a)`` twice); a tie goes to the lexicographically greatest
      pair of byte strings, ``max`` over ``(left, right)`` tuples of ``bytes``;
    - ids: 0..255 are the bytes, merge ``n`` creates ``256 + n``, and the special
      tokens follow the merges, in the order given;
    - ``vocab_size - 256 - len(special_tokens)`` merges, fewer when no pair is left.

    Args:
        text: the training text.
        vocab_size: the size of the vocabulary, special tokens included.
        special_tokens: strings that become one token each.
        pattern: the pre-tokenization regular expression.

    Returns:
        ``(vocab, merges)``: ``{id: bytes}`` and the merged pairs in order.
    """
    special_tokens = list(special_tokens or [])
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError(f"vocab_size {vocab_size} leaves no room for 256 bytes and "
                         f"{len(special_tokens)} special tokens")
    ### BEGIN SOLUTION
    splitter, compiled = special_splitter(special_tokens), regex.compile(pattern)
    chunks = splitter.split(text)[::2] if splitter else [text]
    counts = Counter(piece for chunk in chunks for piece in compiled.findall(chunk))
    words = [list(piece.encode("utf-8")) for piece in counts]  # each distinct piece once
    freq = list(counts.values())
    vocab = {i: bytes([i]) for i in range(256)}
    key = cache(lambda i: descending_key(vocab[i]))

    pair_count: defaultdict[tuple[int, int], int] = defaultdict(int)
    holders: defaultdict[tuple[int, int], set[int]] = defaultdict(set)  # pieces a pair occurs in
    for w, word in enumerate(words):
        for pair in zip(word, word[1:], strict=False):
            pair_count[pair] += freq[w]
            holders[pair].add(w)
    heap = [(-c, key(a), key(b), (a, b)) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)

    merges: list[tuple[bytes, bytes]] = []
    while len(merges) < n_merges and heap:
        count, _, _, pair = heapq.heappop(heap)
        if pair_count.get(pair) != -count:
            continue  # an old entry: the pair's count has changed since it was pushed
        new = 256 + len(merges)
        vocab[new] = vocab[pair[0]] + vocab[pair[1]]
        merges.append((vocab[pair[0]], vocab[pair[1]]))
        changed = set()
        # Only the pieces holding the pair change: take their old pairs' counts away
        # and add the merged piece's.
        for w in holders.pop(pair):
            word, f = words[w], freq[w]
            for p in zip(word, word[1:], strict=False):
                pair_count[p] -= f
                changed.add(p)
            word = words[w] = merge_pair(word, pair, new)
            for p in zip(word, word[1:], strict=False):
                pair_count[p] += f
                holders[p].add(w)
                changed.add(p)
        for p in changed:
            if pair_count[p] > 0:
                heapq.heappush(heap, (-pair_count[p], key(p[0]), key(p[1]), p))
            else:
                del pair_count[p]
    for token in special_tokens:
        vocab[len(vocab)] = token.encode("utf-8")
    return vocab, merges
    ### END SOLUTION


# --------------------------------------------------------------------------- SmolLM2's vocabulary


@cache
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for every byte, as byte-level vocabularies store tokens:
    printable Latin-1 bytes stand for themselves, the others (space, control bytes)
    for the characters from U+0100 on (a space is ``Ġ``)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + n) for n, b in enumerate(others)}}


def smollm2_vocabulary() -> tuple[dict[int, bytes], list[tuple[bytes, bytes]], list[str]]:
    """SmolLM2's vocabulary, merges and special tokens as byte strings, read from the
    GGUF file the course ships (``transformer_course.pretrained.smollm2``).

    Returns:
        ``(vocab, merges, special_tokens)`` for :class:`Tokenizer` with
        :data:`SMOLLM2_PATTERN`.
    """
    from transformer_course.pretrained.smollm2 import read_gguf

    gguf = read_gguf()  # cached: the real tokenizer (build_tokenizer) reads the same
    tokens, kinds, merged = gguf.tokens, gguf.token_types, gguf.merges
    to_byte = {c: b for b, c in byte_to_unicode().items()}
    control = 3

    def as_bytes(token: str) -> bytes:
        return bytes(to_byte[c] for c in token)

    specials = [t for t, kind in zip(tokens, kinds, strict=True) if kind == control]
    vocab = {i: t.encode("utf-8") if kind == control else as_bytes(t)
             for i, (t, kind) in enumerate(zip(tokens, kinds, strict=True))}
    merges = [tuple(as_bytes(part) for part in m.split(" ", 1)) for m in merged]
    return vocab, merges, specials
