"""Correct answers to chapter 1, written the ways students write them.

Each exercise has several variants, as different from the reference as a student's
code would be (other library calls, other formulas, other masking values); the checks
must give every one of them full marks. ``ALTERNATIVES`` maps an exercise to its variants.
"""

import math

import torch


def softmax_logsumexp(x, dim=-1):
    return torch.exp(x - torch.logsumexp(x, dim=dim, keepdim=True))


def softmax_max_shift(x, dim=-1):
    shifted = x - x.max(dim=dim, keepdim=True).values
    e = shifted.exp()
    return e / e.sum(dim=dim, keepdim=True)


def softmax_moved_dim(x, dim=-1):
    moved = x.movedim(dim, -1)
    top = moved.amax(-1, keepdim=True)
    e = torch.exp(moved - top)
    return (e / e.sum(-1, keepdim=True)).movedim(-1, dim)


def attention_scores_einsum(q, k):
    return torch.einsum("...qd,...kd->...qk", q, k) / q.shape[-1] ** 0.5


def attention_scores_prescaled(q, k):
    scale = 1.0 / math.sqrt(q.size(-1))
    return torch.matmul(q * scale, k.transpose(-1, -2))


def causal_mask_compare(seq_len):
    rows = torch.arange(seq_len).unsqueeze(1)
    cols = torch.arange(seq_len).unsqueeze(0)
    return cols <= rows


def causal_mask_not_triu(seq_len):
    return ~torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool), diagonal=1)


def causal_mask_loop(seq_len):
    mask = torch.zeros(seq_len, seq_len, dtype=torch.bool)
    for i in range(seq_len):
        mask[i, : i + 1] = True
    return mask


def padding_mask_compare(lengths, max_len):
    positions = torch.arange(max_len)
    return (positions.view(1, -1) < lengths.view(-1, 1)).unsqueeze(1)


def padding_mask_loop(lengths, max_len):
    mask = torch.zeros(len(lengths), 1, max_len, dtype=torch.bool)
    for b, n in enumerate(lengths.tolist()):
        mask[b, 0, :n] = True
    return mask


def scaled_dot_product_attention_large_negative(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(mask.logical_not(), torch.finfo(scores.dtype).min)
    scores = scores - scores.amax(dim=-1, keepdim=True)
    weights = scores.exp()
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights @ v, weights


def scaled_dot_product_attention_where(q, k, v, mask=None):
    scores = torch.einsum("...id,...jd->...ij", q, k) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf"), dtype=scores.dtype))
    weights = torch.exp(scores - torch.logsumexp(scores, dim=-1, keepdim=True))
    return torch.einsum("...ij,...jd->...id", weights, v), weights


ALTERNATIVES = {
    "softmax": [softmax_logsumexp, softmax_max_shift, softmax_moved_dim],
    "attention_scores": [attention_scores_einsum, attention_scores_prescaled],
    "causal_mask": [causal_mask_compare, causal_mask_not_triu, causal_mask_loop],
    "padding_mask": [padding_mask_compare, padding_mask_loop],
    "scaled_dot_product_attention": [scaled_dot_product_attention_large_negative,
                                     scaled_dot_product_attention_where],
}
