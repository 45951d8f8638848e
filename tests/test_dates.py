"""The date-normalisation task: generation, splits, vocabulary, batching, scoring."""

import datetime as dt
import random

import pytest
import torch

from transformer_course.dates import (
    FORMATS,
    SRC_VOCAB,
    TGT_VOCAB,
    exact_match,
    in_split,
    make_batch,
    ordinal,
    random_pairs,
    translate,
)
from transformer_course.decoder import Transformer


def test_every_format_writes_the_example_date():
    d = dt.date(2021, 3, 3)
    for example, write in FORMATS.items():
        assert write(d) == example
        SRC_VOCAB.encode(write(dt.date(1987, 9, 23)))  # every character is known


def test_ordinals():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]


def test_splits_are_disjoint_and_targets_are_iso():
    train = random_pairs(2000, "train", seed=0)
    test = random_pairs(500, "test", seed=0)
    assert not {t for _, t in train} & {t for _, t in test}
    for _, target in train[:50] + test[:50]:
        assert in_split(dt.date.fromisoformat(target), "test") == (target in {t for _, t in test})
    assert random_pairs(5, seed=3) == random_pairs(5, seed=3)
    with pytest.raises(ValueError, match="split"):
        random_pairs(1, "valid")


def test_vocab_round_trip_and_unknown_characters():
    ids = TGT_VOCAB.encode("2021-03-03", bos_eos=True)
    assert ids[0] == TGT_VOCAB.bos_id and ids[-1] == TGT_VOCAB.eos_id
    assert TGT_VOCAB.decode(ids + [TGT_VOCAB.pad_id]) == "2021-03-03"
    assert TGT_VOCAB.decode([TGT_VOCAB.bos_id, *TGT_VOCAB.encode("12"), TGT_VOCAB.eos_id,
                             *TGT_VOCAB.encode("9")]) == "12"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        SRC_VOCAB.encode("3 März")


def test_make_batch_pads_and_masks():
    pairs = [("3 Mar 2021", "2021-03-03"), ("Wednesday, March 3, 2021", "2021-03-03")]
    src, tgt, src_mask = make_batch(pairs)
    assert src.shape == (2, 24) and tgt.shape == (2, 12) and src_mask.shape == (2, 1, 24)
    assert src_mask[0, 0].sum() == 10 and (src[0, 10:] == SRC_VOCAB.pad_id).all()


def test_translate_and_exact_match_on_an_untrained_model():
    torch.manual_seed(0)
    model = Transformer(len(SRC_VOCAB), len(TGT_VOCAB), d_model=16, n_heads=2, d_ff=32, n_layers=1)
    sources = [s for s, _ in random_pairs(3, "test", rng=random.Random(0))]
    predictions = translate(model, sources, max_len=12)
    assert len(predictions) == 3 and all(len(p) <= 11 for p in predictions)
    assert exact_match(["a", "b"], ["a", "c"]) == 0.5

