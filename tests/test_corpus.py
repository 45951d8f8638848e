"""The bundled corpus, its tokenizer, the split and the batches."""

import pytest
import torch

from transformer_course.corpus import CharTokenizer, get_batch, load_corpus, load_text, train_val_split


def test_corpus_is_bundled_and_about_a_megabyte():
    text = load_text()
    assert 900_000 < len(text) < 1_200_000
    assert text.isascii()
    assert "To be, or not to be" in text


def test_char_tokenizer_round_trip_and_errors():
    tok = CharTokenizer("hello world")
    assert tok.vocab_size == 8
    assert tok.decode(tok.encode("low hello")) == "low hello"
    assert tok.decode(torch.tensor(tok.encode("old"))) == "old"
    with pytest.raises(ValueError, match="not in this tokenizer"):
        tok.encode("z")


def test_split_takes_every_tenth_chunk():
    data = torch.arange(100)
    train, val = train_val_split(data, 0.1, chunk=5)
    assert val.tolist() == [*range(45, 50), *range(95, 100)]
    assert torch.equal(torch.sort(torch.cat([train, val])).values, data)
    assert len(train_val_split(data, 0.25, chunk=5)[1]) == 25
    with pytest.raises(ValueError):
        train_val_split(data, 1.5)


def test_load_corpus_split():
    corpus = load_corpus()
    assert corpus.tokenizer.vocab_size == len(set(corpus.text))
    assert len(corpus.train) + len(corpus.val) == len(corpus.text)
    # the first validation chunk is the tenth 10,000 characters of the text
    assert corpus.tokenizer.decode(corpus.val[:50]) == corpus.text[90_000:90_050]
    assert len(corpus.val) > 0.09 * len(corpus.text)


def test_batches_are_windows_of_the_data_and_seeded():
    data = torch.arange(1000)
    batch = get_batch(data, 4, 16, torch.Generator().manual_seed(0))
    assert batch.shape == (4, 16)
    assert torch.equal(batch[:, 1:] - batch[:, :-1], torch.ones(4, 15, dtype=torch.long))
    again = get_batch(data, 4, 16, torch.Generator().manual_seed(0))
    assert torch.equal(batch, again)
    assert get_batch(torch.arange(16), 3, 16).tolist() == [list(range(16))] * 3
    with pytest.raises(ValueError, match="fewer than block_size"):
        get_batch(torch.arange(5), 2, 8)
