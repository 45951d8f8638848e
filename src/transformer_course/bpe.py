"""Chapter 6: byte-level byte-pair encoding (BPE), trained from scratch.

Text becomes its UTF-8 bytes (ids 0..255); training repeatedly replaces the most
frequent adjacent pair of ids by a new id, so frequent character sequences become single
tokens. The rules, exact enough that every correct implementation learns the same
merges and the same token ids:

- training works on the bytes of the whole text (no splitting into words);
- pairs are counted over every adjacent position (``"aaa"`` holds ``(a, a)`` twice);
- each step merges the most frequent pair; a tie goes to the pair whose first occurrence
  comes first in the current sequence;
- merge ``n`` (counting from 0) creates id ``256 + n``;
- encoding repeatedly applies the present pair with the earliest merge;
- decoding joins the bytes and decodes them as UTF-8, replacing invalid sequences.
"""

from __future__ import annotations

from collections import Counter


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, left to right, by ``new_id``.

    Occurrences do not overlap: in ``[a, a, a]`` the pair ``(a, a)`` is replaced once,
    at the start.
    """
    out: list[int] = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe(text: str, vocab_size: int) -> list[tuple[int, int]]:
    """Learn ``vocab_size - 256`` merges from the UTF-8 bytes of ``text``.

    Args:
        text: the training text.
        vocab_size: final vocabulary size, at least 256 (the byte ids).

    Returns:
        The merges in order: entry ``n`` is the pair of ids that becomes id ``256 + n``.
        Training stops early when no adjacent pair is left.
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256 (the byte ids), got {vocab_size}")
    ### BEGIN SOLUTION
    ids = list(text.encode("utf-8"))
    merges: list[tuple[int, int]] = []
    for n in range(vocab_size - 256):
        counts = Counter(zip(ids[:-1], ids[1:], strict=True))
        if not counts:
            break
        best = max(counts.values())
        tied = {pair for pair, count in counts.items() if count == best}
        # A Counter remembers insertion order, which is the order of first occurrence in
        # the sequence: the first pair with the top count wins the tie.
        pair = next(p for p in counts if p in tied)
        merges.append(pair)
        ids = merge_pair(ids, pair, 256 + n)
    return merges
    ### END SOLUTION


def bpe_encode(text: str, merges: list[tuple[int, int]]) -> list[int]:
    """Token ids of ``text`` under ``merges`` (from :func:`train_bpe`).

    Args:
        text: any string.
        merges: pairs in merge order; pair ``n`` becomes id ``256 + n``.

    Returns:
        The ids, each below ``256 + len(merges)``.
    """
    ### BEGIN SOLUTION
    rank = {tuple(pair): n for n, pair in enumerate(merges)}
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        present = [p for p in set(zip(ids[:-1], ids[1:], strict=True)) if p in rank]
        if not present:
            break
        pair = min(present, key=rank.__getitem__)  # the earliest merge first
        ids = merge_pair(ids, pair, 256 + rank[pair])
    return ids
    ### END SOLUTION


def bpe_decode(ids: list[int], merges: list[tuple[int, int]]) -> str:
    """The text of BPE token ids: expand every id to its bytes, decode as UTF-8.

    A token sequence can end in the middle of a multi-byte character; such bytes
    become U+FFFD (``errors="replace"``) instead of raising.
    """
    ### BEGIN SOLUTION
    vocab = {i: bytes([i]) for i in range(256)}
    for n, (a, b) in enumerate(merges):
        vocab[256 + n] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
    ### END SOLUTION
