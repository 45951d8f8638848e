"""Chapter 9: the graded exercises of "why Transformers matter, measured".

Three small tools the chapter's experiments use: an Elman RNN written with an explicit
loop over time (the sequential baseline), a power-law fit (for the scaling curve) and a
matrix of cosine similarities (for contextual representations). The experiments
themselves live in :mod:`transformer_course.experiments`, one module each.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rnn_forward(
    x: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
    h0: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """An Elman RNN (tanh), one time step after another, batch-first.

    ``h_t = tanh(x_t @ weight_ih^T + bias_ih + h_{t-1} @ weight_hh^T + bias_hh)``, the
    same computation and parameter names as one layer of ``torch.nn.RNN``.

    Args:
        x: ``(B, L, D_in)`` inputs.
        weight_ih: ``(H, D_in)`` input-to-hidden weight.
        weight_hh: ``(H, H)`` hidden-to-hidden weight.
        bias_ih, bias_hh: ``(H,)`` biases (both are added, as in ``nn.RNN``).
        h0: ``(B, H)`` initial hidden state; zeros when None.

    Returns:
        ``output (B, L, H)``, the hidden state after every step, and ``h_n (B, H)``, the
        state after the last step.
    """
    ### BEGIN SOLUTION
    batch, length, _ = x.shape
    h = x.new_zeros(batch, weight_hh.size(0)) if h0 is None else h0
    # The input projection does not depend on h, so all time steps take it at once;
    # only the recurrence has to wait for the previous step.
    inputs = x @ weight_ih.T + bias_ih
    states = []
    for t in range(length):
        h = torch.tanh(inputs[:, t] + h @ weight_hh.T + bias_hh)
        states.append(h)
    return torch.stack(states, dim=1), h
    ### END SOLUTION


def fit_power_law(n_params: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
    """Fit ``loss ~ coefficient * n_params ** exponent`` by least squares in log space.

    Taking logarithms turns the power law into a line,
    ``log(loss) = log(coefficient) + exponent * log(n_params)``, so the fit is ordinary
    least squares of ``log(losses)`` on ``log(n_params)`` (natural logarithms).

    Args:
        n_params: ``(N,)`` positive model sizes, floating point, N >= 2.
        losses: ``(N,)`` positive losses, same dtype.

    Returns:
        ``coefficient`` and ``exponent``, 0-d tensors of the inputs' dtype. For losses
        that fall with size the exponent is negative.
    """
    if n_params.dim() != 1 or n_params.shape != losses.shape or n_params.numel() < 2:
        raise ValueError(
            "fit_power_law takes two 1-D tensors of the same length (at least 2 points); "
            f"got shapes {tuple(n_params.shape)} and {tuple(losses.shape)}"
        )
    if (n_params <= 0).any() or (losses <= 0).any():
        raise ValueError("fit_power_law needs positive sizes and losses (it takes their logarithms)")
    ### BEGIN SOLUTION
    log_n, log_loss = n_params.log(), losses.log()
    dx, dy = log_n - log_n.mean(), log_loss - log_loss.mean()
    exponent = (dx * dy).sum() / (dx * dx).sum()
    intercept = log_loss.mean() - exponent * log_n.mean()
    return intercept.exp(), exponent
    ### END SOLUTION


def cosine_similarity_matrix(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of every row of ``a`` with every row of ``b``.

    Each norm is clamped to at least ``1e-8`` before dividing (as
    ``F.cosine_similarity`` does), so a row of zeros has similarity 0 with everything
    instead of NaN.

    Args:
        a: ``(N, D)``.
        b: ``(M, D)``.

    Returns:
        ``(N, M)``, entry ``[i, j] = a_i . b_j / (|a_i| |b_j|)``, in ``[-1, 1]``.
    """
    ### BEGIN SOLUTION
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return a @ b.T
    ### END SOLUTION
