"""all-MiniLM-L6-v2 on the course's encoder layers equals transformers' BertModel."""

import os
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from transformer_course.encoder import EncoderLayer, LayerNorm
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
    return load_minilm()


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
        load_minilm(blocks=SimpleNamespace(EncoderLayer=Renamed, LayerNorm=LayerNorm))
    with pytest.raises(AttributeError, match="LayerNorm"):
        load_minilm(blocks=SimpleNamespace(EncoderLayer=EncoderLayer))


def test_loader_runs_the_blocks_it_is_given(model):
    """Built from chapter 2 and 4 answers written another way (tests/alternatives),
    MiniLM runs those classes and gives the reference's sentence similarities."""
    from alternatives.ch02_multi_head_attention import MultiHeadAttentionEinsum
    from alternatives.ch04_encoder import (
        EncoderLayerBranches,
        FeedForwardSequential,
        LayerNormSquares,
        LayerNormVarMean,
    )

    class TheirLayer(EncoderLayerBranches):
        def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu",
                     norm_first=False, eps=1e-5):
            super().__init__(d_model, n_heads, d_ff, dropout, activation, norm_first, eps)
            self.self_attn = MultiHeadAttentionEinsum(d_model, n_heads, dropout)

    theirs = load_minilm(blocks=SimpleNamespace(EncoderLayer=TheirLayer, LayerNorm=LayerNormSquares))
    layer = theirs.layers[0]
    assert type(theirs.embedding_norm) is LayerNormSquares and type(layer) is TheirLayer
    assert (type(layer.self_attn), type(layer.ff), type(layer.norm1)) == (
        MultiHeadAttentionEinsum, FeedForwardSequential, LayerNormVarMean)
    emb, want = theirs.encode(SENTENCES), model.encode(SENTENCES)
    torch.testing.assert_close(emb @ emb.T, want @ want.T, rtol=0, atol=1e-4)
