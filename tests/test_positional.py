"""Chapter 3 reference: the sinusoidal table, learned positions, and rotary embeddings
against the Llama implementation in transformers."""

import math

import pytest
import torch

from transformer_course.multi_head import MultiHeadAttention
from transformer_course.positional import (
    LearnedPositionalEmbedding,
    PositionalEncoding,
    apply_rotary,
    sinusoidal_positional_encoding,
)


def test_sinusoidal_table_follows_the_formula():
    max_len, d_model = 9, 6
    pe = sinusoidal_positional_encoding(max_len, d_model)
    assert pe.shape == (max_len, d_model) and pe.dtype == torch.float32
    for p in range(max_len):
        for i in range(d_model // 2):
            angle = p / 10000 ** (2 * i / d_model)
            assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-7)
            assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-7)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_positional_encoding(4, 5)


def test_offset_is_a_rotation_of_each_pair():
    """PE[p + k] is PE[p] with each (sin, cos) pair rotated by an angle that depends on k
    alone, so the dot product of two positions depends only on their distance."""
    pe = sinusoidal_positional_encoding(64, 16).double()
    pairs = pe.view(64, 8, 2)  # (position, pair, (sin, cos))
    offset = 5
    omega = 1.0 / 10000 ** (torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    c, s = torch.cos(offset * omega), torch.sin(offset * omega)
    rotation = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # (8, 2, 2)
    moved = torch.einsum("pij,qpj->qpi", rotation, pairs[:-offset])
    torch.testing.assert_close(moved, pairs[offset:], rtol=0, atol=1e-6)
    dots = (pe[:-offset] * pe[offset:]).sum(-1)
    torch.testing.assert_close(dots, dots[:1].expand_as(dots), rtol=0, atol=1e-5)


def test_attention_without_positions_is_permutation_equivariant():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(1, 7, 16)
    perm = torch.randperm(7)
    with torch.no_grad():
        torch.testing.assert_close(mha(x, x, x)[:, perm], mha(*(x[:, perm],) * 3))
        pos = PositionalEncoding(16).eval()
        px, px_perm = pos(x), pos(x[:, perm])
        assert not torch.allclose(mha(px, px, px)[:, perm], mha(px_perm, px_perm, px_perm))


def test_positional_encoding_module():
    module = PositionalEncoding(8, max_len=20)
    assert "pe" in dict(module.named_buffers()) and not list(module.parameters())
    assert module.state_dict()["pe"].shape == (20, 8)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    out = module(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, x + sinusoidal_positional_encoding(20, 8)[:5].double())
    with pytest.raises(ValueError, match="max_len"):
        module(torch.randn(1, 21, 8))


def test_learned_positional_embedding_trains():
    module = LearnedPositionalEmbedding(10, 4)
    assert sum(p.numel() for p in module.parameters()) == 10 * 4
    x = torch.randn(3, 6, 4)
    out = module(x)
    torch.testing.assert_close(out - x, module.embedding.weight[:6].expand(3, 6, 4))
    out.sum().backward()
    grad = module.embedding.weight.grad
    assert grad[:6].abs().sum() > 0 and grad[6:].abs().sum() == 0  # unused positions untouched
    with pytest.raises(ValueError, match="max_len"):
        module(torch.randn(1, 11, 4))


def _llama_rotary(x, position_ids, base, head_dim):
    """transformers' own Llama RoPE: LlamaRotaryEmbedding for cos/sin, then
    apply_rotary_pos_emb on (B, H, L, Dh) queries and keys."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    n_heads = x.shape[1]
    config = LlamaConfig(hidden_size=head_dim * n_heads, num_attention_heads=n_heads,
                         num_key_value_heads=n_heads, max_position_embeddings=256,
                         rope_theta=base)
    assert config.rope_parameters["rope_theta"] == base
    cos, sin = LlamaRotaryEmbedding(config)(x, position_ids)
    q_embed, k_embed = apply_rotary_pos_emb(x, x.flip(-1), cos, sin, unsqueeze_dim=1)
    return q_embed, k_embed


@pytest.mark.parametrize("base, head_dim", [(10000.0, 16), (100000.0, 64)])
def test_apply_rotary_matches_llama_in_transformers(base, head_dim):
    g = torch.Generator().manual_seed(0)
    batch, n_heads, length = 2, 3, 11
    x = torch.randn(batch, n_heads, length, head_dim, generator=g)
    position_ids = torch.stack([torch.arange(length), torch.arange(40, 40 + length)])  # (B, L)
    q_expected, k_expected = _llama_rotary(x, position_ids, base, head_dim)
    q = apply_rotary(x, position_ids[:, None], base=base)  # (B, 1, L): the same for every head
    k = apply_rotary(x.flip(-1), position_ids[:, None], base=base)
    torch.testing.assert_close(q, q_expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(k, k_expected, rtol=0, atol=1e-6)
    # Default positions are 0..L-1.
    q0, _ = _llama_rotary(x[:1], torch.arange(length)[None], base, head_dim)
    torch.testing.assert_close(apply_rotary(x[:1], base=base), q0, rtol=0, atol=1e-6)


def test_rotary_scores_depend_only_on_relative_offset():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 32, generator=g, dtype=torch.float64).unbind(0)

    def score(m, n):
        rq = apply_rotary(q[None], torch.tensor([m]))[0]
        rk = apply_rotary(k[None], torch.tensor([n]))[0]
        return (rq @ rk).item()

    for offset in (0, 3, 17):
        scores = [score(n + offset, n) for n in (0, 5, 100, 1000)]
        assert max(scores) - min(scores) < 1e-9, (offset, scores)
    assert abs(score(3, 0) - score(0, 3)) > 1e-3  # but direction matters
    x = torch.randn(5, 32, generator=g, dtype=torch.float64)
    torch.testing.assert_close(apply_rotary(x).norm(dim=-1), x.norm(dim=-1))  # a rotation
    with pytest.raises(ValueError, match="even"):
        apply_rotary(torch.randn(3, 5))
