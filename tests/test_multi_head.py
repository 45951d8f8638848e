"""Chapter 2 reference: head reshapes, and equality with torch.nn.MultiheadAttention."""

import pytest
import torch
from torch import nn

from transformer_course import multi_head
from transformer_course.attention import causal_mask, padding_mask, scaled_dot_product_attention
from transformer_course.encoder import LayerNorm
from transformer_course.multi_head import (
    MultiHeadAttention,
    copy_to_torch,
    fused_kernels,
    merge_heads,
    split_heads,
)


def test_split_heads_gives_each_head_a_block_of_features():
    x = torch.randn(2, 5, 12)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    for h in range(3):
        torch.testing.assert_close(heads[:, h], x[..., 4 * h : 4 * (h + 1)], rtol=0, atol=0)
    torch.testing.assert_close(merge_heads(heads), x, rtol=0, atol=0)


def test_merge_heads_concatenates_heads_per_position():
    x = torch.randn(2, 3, 4, 5)
    merged = merge_heads(x)
    assert merged.shape == (2, 4, 15)
    torch.testing.assert_close(merged, torch.cat(list(x.unbind(1)), dim=-1), rtol=0, atol=0)


def test_multi_head_equals_one_attention_per_head():
    """Each head is ordinary attention with its own slice of the projections."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(12, 3).double().eval()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    heads = []
    for h in range(3):
        rows = slice(4 * h, 4 * (h + 1))
        q = x @ mha.w_q.weight[rows].T + mha.w_q.bias[rows]
        k = x @ mha.w_k.weight[rows].T + mha.w_k.bias[rows]
        v = x @ mha.w_v.weight[rows].T + mha.w_v.bias[rows]
        heads.append(scaled_dot_product_attention(q, k, v)[0])
    expected = mha.w_o(torch.cat(heads, dim=-1))
    torch.testing.assert_close(mha(x, x, x), expected, rtol=0, atol=1e-12)


def _torch_pair(d_model, n_heads, bias=True):
    ours = MultiHeadAttention(d_model, n_heads, bias=bias).double().eval()
    theirs = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True).double().eval()
    return ours, copy_to_torch(ours, theirs)


@pytest.mark.parametrize("kind", ["self", "cross", "causal", "padding", "per-query", "no-bias"])
def test_equals_torch_multihead_attention(kind):
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    batch, l_q, l_k, d_model, n_heads = 3, 4, 6, 16, 4
    if kind in ("self", "causal", "no-bias"):
        l_k = l_q
    ours, theirs = _torch_pair(d_model, n_heads, bias=kind != "no-bias")
    query = torch.randn(batch, l_q, d_model, generator=g, dtype=torch.float64)
    key = query if l_k == l_q else torch.randn(batch, l_k, d_model, generator=g, dtype=torch.float64)
    value = key if l_k == l_q else torch.randn(batch, l_k, d_model, generator=g, dtype=torch.float64)
    mask, torch_kwargs = None, {}
    if kind == "causal":
        mask = causal_mask(l_q)
        torch_kwargs["attn_mask"] = ~mask  # PyTorch: True = hidden
    elif kind == "padding":
        mask = padding_mask(torch.tensor([6, 2, 5]), l_k)  # (B, 1, L_k)
        torch_kwargs["key_padding_mask"] = ~mask[:, 0]  # (B, L_k), True = padding
    elif kind == "per-query":
        mask = torch.rand(batch, l_q, l_k, generator=g) < 0.6
        mask[..., 0] = True  # no query with every key hidden
        # PyTorch takes a per-batch mask as (B * H, L_q, L_k), batch-major.
        torch_kwargs["attn_mask"] = ~mask.repeat_interleave(n_heads, dim=0)
    out = ours(query, key, value, mask)
    expected, expected_weights = theirs(
        query, key, value, need_weights=True, average_attn_weights=False, **torch_kwargs
    )
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.attn_weights, expected_weights, rtol=0, atol=1e-6)
    assert ours.attn_weights.shape == (batch, n_heads, l_q, l_k)


def test_parameter_count_matches_pytorch_and_formula():
    d_model, n_heads = 64, 8
    ours, theirs = _torch_pair(d_model, n_heads)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in theirs.parameters())
    assert count == 4 * (d_model * d_model + d_model)  # four D x D matrices and biases
    ours_no_bias, _ = _torch_pair(d_model, n_heads, bias=False)
    assert sum(p.numel() for p in ours_no_bias.parameters()) == 4 * d_model * d_model


def test_dropout_acts_on_weights_in_training_only():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 6, 8)
    mha.eval()
    assert torch.equal(mha(x, x, x), mha(x, x, x))
    mha.train()
    a, b = mha(x, x, x), mha(x, x, x)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(mha.attn_weights.sum(-1), torch.ones(2, 2, 6))  # before dropout


def test_gradients_reach_every_projection():
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(2, 5, 8)
    mha(x, x, x, causal_mask(5)).sum().backward()
    for name, param in mha.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(1, 3, 8)
    with pytest.raises(TypeError, match="bool"):
        mha(x, x, x, mask=torch.ones(3, 3))
    with pytest.raises(ValueError, match="embed_dim"):
        copy_to_torch(mha, nn.MultiheadAttention(8, 4, batch_first=True))


def _outputs_and_grads(mha: MultiHeadAttention, query, key, value, mask):
    mha.zero_grad()
    inputs = [t.detach().requires_grad_() for t in (query, key, value)]
    if query is key is value:
        inputs = [inputs[0]] * 3  # self-attention: one tensor, as the models pass it
    out = mha(*inputs, mask)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    grads = [p.grad.clone() for p in mha.parameters()] + [inputs[0].grad.clone()]
    if query is not key:
        grads += [inputs[1].grad.clone(), inputs[2].grad.clone()]
    return out.detach(), grads


@pytest.mark.parametrize(
    "kind", ["self", "causal", "cross", "cross padded", "per query", "no bias"]
)
def test_fused_path_gives_the_same_outputs_and_gradients(kind):
    """Inside fused_kernels the module's attention call runs F.scaled_dot_product_attention;
    in float64 it agrees with the code as written to 1e-10 in the output and in every
    gradient."""
    torch.manual_seed(0)
    batch, l_q, l_k, d_model, n_heads = 3, 6, 6 if kind in ("self", "causal", "no bias") else 7, 16, 4
    mha = MultiHeadAttention(d_model, n_heads, bias=kind != "no bias").double()
    query = torch.randn(batch, l_q, d_model, dtype=torch.float64)
    key = value = query if l_q == l_k else torch.randn(batch, l_k, d_model, dtype=torch.float64)
    if l_q != l_k:
        value = torch.randn(batch, l_k, d_model, dtype=torch.float64)
    mask = {
        "causal": causal_mask(l_q),
        "cross padded": padding_mask(torch.tensor([7, 2, 5]), l_k),
        "per query": torch.rand(batch, l_q, l_k) < 0.6,
    }.get(kind)
    explicit_out, explicit_grads = _outputs_and_grads(mha, query, key, value, mask)
    with fused_kernels(mha) as report:
        fused_out, fused_grads = _outputs_and_grads(mha, query, key, value, mask)
        fused_out, fused_grads = _outputs_and_grads(mha, query, key, value, mask)  # the kernel alone
    assert report.fused == {"MultiHeadAttention": 1} and not report.kept
    torch.testing.assert_close(fused_out, explicit_out, rtol=0, atol=1e-10)
    for fused, explicit in zip(fused_grads, explicit_grads, strict=True):
        torch.testing.assert_close(fused, explicit, rtol=0, atol=1e-10)


def test_fused_path_swaps_only_the_attention_call(monkeypatch):
    """The module's own forward still runs (its projections, its reshapes), with the
    kernel in place of scaled_dot_product_attention; a square causal mask becomes
    is_causal=True and any other mask is passed on."""
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append((kwargs["is_causal"], kwargs["attn_mask"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    mha = MultiHeadAttention(8, 2).eval()
    projected = []
    mha.w_q.register_forward_hook(lambda *_: projected.append(1))
    x = torch.randn(2, 5, 8)
    not_causal = causal_mask(5).clone()
    not_causal[4, 0] = False
    with fused_kernels(mha):
        mha(x, x, x, causal_mask(5))  # first call: both ways, then compared
        calls.clear()
        mha(x, x, x, causal_mask(5))
        mha(x, x, x, not_causal)
    assert calls[0] == (True, None)
    assert calls[1][0] is False and torch.equal(calls[1][1], not_causal)
    assert len(projected) == 4  # the module's own forward, every call
    assert multi_head.scaled_dot_product_attention is scaled_dot_product_attention  # restored


def test_a_module_whose_fused_result_differs_keeps_its_own_code():
    """Dropout on the attention weights in training: the kernel cannot reproduce the
    module's own path, so the switch leaves the module as written and says so."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 6, 8)
    with fused_kernels(mha) as report:
        mha(x, x, x)
        assert mha.attn_weights.shape == (2, 2, 6, 6)  # the code as written ran
    assert report.fused == {} and "MultiHeadAttention" in report.kept
    assert "MultiHeadAttention kept as written" in str(report)


def test_fused_kernels_switches_and_restores_every_attention_and_layer_norm():
    model = nn.ModuleList([MultiHeadAttention(8, 2), nn.Linear(8, 8), MultiHeadAttention(8, 2),
                           LayerNorm(8), nn.LayerNorm(8)])
    x = torch.randn(1, 3, 8)
    with fused_kernels(model) as report:
        for _ in range(2):
            model[0](x, x, x)
            model[2](x, x, x)
            model[3](x)
            model[4](x)
        assert model[0].attn_weights.numel() == 0  # the kernel keeps no weights
    assert report.fused == {"MultiHeadAttention": 2, "LayerNorm": 1}
    assert "2 MultiHeadAttention, 1 LayerNorm ran PyTorch kernels" in str(report)
    assert all("forward" not in vars(m) for m in model)  # each class's own forward again
    model[0](x, x, x)
    assert model[0].attn_weights.shape == (1, 2, 3, 3)
    with pytest.raises(RuntimeError), fused_kernels(model):
        raise RuntimeError("the forwards come back after an error too")
    assert all("forward" not in vars(m) for m in model)


def test_fused_kernels_runs_a_students_module_through_the_seam():
    """A class written elsewhere that calls scaled_dot_product_attention by name (here
    once per head) gets the kernel; one that computes attention inline is not touched."""
    from alternatives.ch02_multi_head_attention import (
        MultiHeadAttentionEinsum,
        MultiHeadAttentionFunctional,
    )

    torch.manual_seed(0)
    per_head, inline = MultiHeadAttentionFunctional(8, 2).eval(), MultiHeadAttentionEinsum(8, 2)
    x = torch.randn(2, 5, 8)
    want = per_head(x, x, x, causal_mask(5))
    with fused_kernels(nn.ModuleList([per_head, inline])) as report:
        per_head(x, x, x, causal_mask(5))
        got = per_head(x, x, x, causal_mask(5))
    assert report.fused == {"MultiHeadAttentionFunctional": 1}
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
