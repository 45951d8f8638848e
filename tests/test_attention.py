"""Chapter 1 reference against PyTorch and against the formula written out."""

import math

import pytest
import torch
import torch.nn.functional as F

from transformer_course.attention import (
    attention_scores,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
    softmax,
)


def test_softmax_matches_torch_and_is_stable():
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    for dim in (0, 1, -1):
        torch.testing.assert_close(softmax(x, dim), torch.softmax(x, dim))
    big = torch.tensor([[1000.0, 1001.0, 999.0]])
    assert torch.isfinite(softmax(big)).all()
    torch.testing.assert_close(softmax(big), torch.softmax(big, -1))


def test_masks():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(3).dtype == torch.bool
    mask = padding_mask(torch.tensor([2, 3]), 4)
    assert mask.shape == (2, 1, 4)
    assert mask[:, 0].tolist() == [[True, True, False, False], [True, True, True, False]]


@pytest.mark.parametrize(
    "shape_q, shape_kv, mask_kind",
    [
        ((2, 5, 8), (2, 5, 8), None),
        ((2, 3, 4, 8), (2, 3, 6, 8), None),
        ((2, 3, 6, 8), (2, 3, 6, 8), "causal"),
        ((3, 2, 5, 4), (3, 2, 7, 4), "padding"),
    ],
)
def test_attention_equals_pytorch(shape_q, shape_kv, mask_kind):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(*shape_q, generator=g, dtype=torch.float64)
    k = torch.randn(*shape_kv, generator=g, dtype=torch.float64)
    v = torch.randn(*shape_kv[:-1], 3, generator=g, dtype=torch.float64)
    mask = None
    if mask_kind == "causal":
        mask = causal_mask(shape_q[-2])
    elif mask_kind == "padding":
        lengths = torch.randint(1, shape_kv[-2] + 1, (shape_q[0],), generator=g)
        mask = padding_mask(lengths, shape_kv[-2])[:, None]  # (B, 1, 1, L_k) for heads
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # The formula written out, independently of the reference's helpers.
    scores = torch.einsum("...qd,...kd->...qk", q, k) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(weights, torch.softmax(scores, -1), rtol=0, atol=1e-12)
    raw = torch.einsum("...qd,...kd->...qk", q, k)
    torch.testing.assert_close(attention_scores(q, k), raw / math.sqrt(q.shape[-1]))


def test_fully_masked_row_gives_zeros_not_nan():
    q = k = v = torch.randn(1, 2, 4)
    mask = torch.tensor([[False, False], [True, True]])
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(out).all()
    assert weights[0, 0].tolist() == [0.0, 0.0]
    assert out[0, 0].abs().sum() == 0
