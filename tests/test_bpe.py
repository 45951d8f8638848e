"""Byte-level BPE: the tie rule, merge-order encoding, lossless round trips."""

import pytest

from transformer_course.bpe import bpe_decode, bpe_encode, merge_pair, train_bpe


def test_merge_pair_is_left_to_right_without_overlap():
    assert merge_pair([1, 1, 1, 2, 1, 1], (1, 1), 9) == [9, 1, 2, 9]


def test_most_frequent_pair_first_and_ids_from_256():
    merges = train_bpe("aaabdaaabac", 259)
    # "aa" occurs 4 times (overlapping counted), then ("aa", "a") ... as in the classic example
    assert merges[0] == (97, 97)
    assert len(merges) == 3
    assert bpe_encode("aaab", merges)[0] >= 256


def test_tie_goes_to_the_pair_that_occurs_first():
    # "zz" and "aa" both occur three times; "zz" comes first although it is larger.
    merges = train_bpe("zz aa zz aa zz aa", 257)
    assert merges == [(ord("z"), ord("z"))]
    merges = train_bpe("aa zz aa zz aa zz", 257)
    assert merges == [(ord("a"), ord("a"))]


def test_tie_uses_the_current_sequence_after_earlier_merges():
    # After merging "ab" -> 256, the pairs (256, "c") and ("x", "y") tie; (256, "c") occurs first.
    merges = train_bpe("abcab xyxy abc", 258)
    assert merges[0] == (97, 98)
    assert merges[1] == (256, ord("c"))


def test_encode_applies_the_earliest_merge_not_the_most_frequent_pair():
    merges = [(97, 98), (98, 99)]
    assert bpe_encode("abcbcbc", merges) == [256, 99, 257, 257]


@pytest.mark.parametrize("text", ["To be, or not to be", "naïve café 東京 ½", "", "a"])
def test_round_trip(text):
    merges = train_bpe("To be, or not to be, naïve café 東京 ½ " * 3, 300)
    ids = bpe_encode(text, merges)
    assert bpe_decode(ids, merges) == text
    assert all(0 <= i < 256 + len(merges) for i in ids)


def test_compresses_and_stops_when_no_pair_is_left():
    text = "the cat and the hat and the bat " * 5
    merges = train_bpe(text, 320)
    assert len(bpe_encode(text, merges)) < len(text.encode()) / 3
    assert train_bpe("ab", 300) == [(97, 98)]


def test_invalid_utf8_is_replaced():
    ids = list("é".encode())[:1]
    assert bpe_decode(ids, []) == "\ufffd"


def test_vocab_size_below_256_is_refused():
    with pytest.raises(ValueError, match="at least 256"):
        train_bpe("abc", 100)
