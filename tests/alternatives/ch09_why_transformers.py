"""Correct answers to chapter 9, written the ways students write them
(``ALTERNATIVES`` maps an exercise to its variants)."""

import torch
import torch.nn.functional as F


def rnn_forward_cell(x, weight_ih, weight_hh, bias_ih, bias_hh, h0=None):
    """Everything inside the loop, ``F.linear`` for both products."""
    h = torch.zeros(x.size(0), weight_hh.size(0), dtype=x.dtype) if h0 is None else h0
    outputs = []
    for t in range(x.size(1)):
        h = torch.tanh(F.linear(x[:, t], weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh))
        outputs.append(h.unsqueeze(1))
    return torch.cat(outputs, dim=1), h


def rnn_forward_preallocated(x, weight_ih, weight_hh, bias_ih, bias_hh, h0=None):
    """A preallocated output and ``addmm``."""
    batch, length, _ = x.shape
    hidden = weight_hh.shape[0]
    out = x.new_empty(batch, length, hidden)
    h = x.new_zeros(batch, hidden) if h0 is None else h0.clone()
    bias = bias_ih + bias_hh
    for t in range(length):
        h = torch.tanh(torch.addmm(bias, x[:, t], weight_ih.t()) + h.mm(weight_hh.t()))
        out[:, t] = h
    return out, out[:, -1]


def fit_power_law_lstsq(n_params, losses):
    design = torch.stack([torch.ones_like(n_params), n_params.log()], dim=1)
    solution = torch.linalg.lstsq(design, losses.log()[:, None]).solution[:, 0]
    return solution[0].exp(), solution[1]


def fit_power_law_normal_equations(n_params, losses):
    x, y = torch.log(n_params), torch.log(losses)
    n = x.numel()
    slope = (n * (x * y).sum() - x.sum() * y.sum()) / (n * (x * x).sum() - x.sum() ** 2)
    intercept = (y.sum() - slope * x.sum()) / n
    return torch.exp(intercept), slope


def cosine_similarity_matrix_normalize(a, b):
    return F.normalize(a, dim=-1, eps=1e-8) @ F.normalize(b, dim=-1, eps=1e-8).T


def cosine_similarity_matrix_outer(a, b):
    norms = a.norm(dim=1).clamp(min=1e-8)[:, None] * b.norm(dim=1).clamp(min=1e-8)[None, :]
    return (a @ b.T) / norms


ALTERNATIVES = {
    "rnn_forward": [rnn_forward_cell, rnn_forward_preallocated],
    "fit_power_law": [fit_power_law_lstsq, fit_power_law_normal_equations],
    "cosine_similarity_matrix": [cosine_similarity_matrix_normalize, cosine_similarity_matrix_outer],
}
