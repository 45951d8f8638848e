"""all-MiniLM-L6-v2 on the course's encoder layers equals transformers' BertModel."""

import os

import pytest
import torch
from torch import nn

from transformer_course.encoder import EncoderLayer
from transformer_course.pretrained.minilm import (
    INSTALL_HINT,
    load_minilm,
    mean_pool,
    minilm_path,
)

pytestmark = pytest.mark.skipif(minilm_path() is None, reason=INSTALL_HINT)

SENTENCES = ["A man is playing a guitar.", "Someone plays an instrument.",
             "The stock market fell sharply today.", "Hi"]


@pytest.fixture(scope="module")
def model():
    return load_minilm(EncoderLayer)


def test_embeddings_equal_bert_with_mean_pooling(model):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    bert = transformers.BertModel.from_pretrained(str(minilm_path())).eval()
    ids, mask, _ = model.tokenize(SENTENCES)
    with torch.no_grad():
        hidden = bert(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    expected = nn.functional.normalize(mean_pool(hidden, mask), dim=-1)
    ours = model.encode(SENTENCES)
    assert ours.shape == (4, 384)
    assert (ours - expected).abs().max() < 1e-4
    states = model.token_states(SENTENCES)
    assert (states.hidden - hidden)[mask].abs().max() < 1e-4


def test_token_states_and_similarity(model):
    states = model.token_states(SENTENCES[:2])
    assert states.tokens[0][0] == "[CLS]" and states.tokens[0][-1] == "[SEP]"
    assert states.hidden.shape[:2] == states.attention_mask.shape
    emb = model.encode(SENTENCES)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(4))
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.3  # the paraphrase is closer than the unrelated sentence


def test_loader_rejects_a_layer_with_other_names():
    class Renamed(EncoderLayer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.attention = self.self_attn
            del self.self_attn

    with pytest.raises(ValueError, match="self_attn"):
        load_minilm(Renamed)
