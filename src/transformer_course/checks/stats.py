"""Judging sampled tokens by their distribution, with exact binomial tails.

A sampler is correct when it draws from the right distribution, however it draws
(``torch.multinomial``, the Gumbel-max trick, inverse CDF with ``torch.rand``). So a
sampled output is judged by counting: the rows of a case that share one distribution
form a group of ``n`` draws, and for every token ``v`` of that distribution ``p``:

- ``p[v] == 0`` (outside the kept top-k / top-p set): ``v`` must never be drawn;
- ``p[v] > 0``: its count ``X ~ Binomial(n, p[v])`` must lie in ``[lo, hi]``, the
  narrowest interval with ``P(X < lo) <= ALPHA / 2`` and ``P(X > hi) <= ALPHA / 2``,
  computed from the exact binomial distribution (:func:`acceptance`). A token kept with
  probability 1 (greedy, ``top_k=1``) must therefore be drawn every time.

False fail. A correct sampler fails a case only if some count leaves its interval; by
the union bound that has probability at most the sum of the exact tails of every test
(:func:`false_fail_probability`), below ``ALPHA`` times the number of tests.

Miss. A wrong sampler that draws from ``q`` passes a case only if every test passes, so
its pass probability is at most that of any single test: ``(1 - q_out)^n`` for the
support test (``q_out``: the mass ``q`` puts outside the kept set) and
``P_q(lo <= X <= hi)`` for a count (:func:`pass_probability`); over several cases it is
at most the smallest of these. Both numbers are computed, per exercise and seed, by
``scripts/check_margins.py``; the tests require both below ``1e-6``.

The probability is over the generator's draws: a case uses a fixed seed, so a given
sampler always gets the same verdict; the bound says how unlikely it is that a correct
sampler meets a seed that fails it.
"""

from __future__ import annotations

import math
from functools import cache

import torch
from torch import Tensor

ALPHA = 1e-10
"""Two-sided false-fail probability of one count test."""


@cache
def _log_binomial(n: int) -> Tensor:
    k = torch.arange(n + 1, dtype=torch.float64)
    return math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)


def binomial_pmf(n: int, p: Tensor) -> Tensor:
    """``P(X = k)`` for ``k = 0..n``, ``X ~ Binomial(n, p)``, for each probability of
    ``p`` ``(T,)``: float64 ``(T, n + 1)``."""
    p = p.to(torch.float64)[:, None].clamp(0.0, 1.0)
    k = torch.arange(n + 1, dtype=torch.float64)
    log_pmf = _log_binomial(n) + torch.xlogy(k, p) + torch.xlogy(n - k, 1.0 - p)
    return log_pmf.exp()


def acceptance(n: int, p: Tensor, alpha: float = ALPHA) -> tuple[Tensor, Tensor, Tensor]:
    """``(lo, hi, tail)`` for each probability of ``p`` ``(T,)``: the count interval of
    one test and its exact two-sided tail ``P(X < lo) + P(X > hi)`` (at most ``alpha``)
    for ``X ~ Binomial(n, p)``."""
    pmf = binomial_pmf(n, p)
    below = pmf.cumsum(-1) - pmf  # P(X < k)
    above = pmf.flip(-1).cumsum(-1).flip(-1) - pmf  # P(X > k)
    k = torch.arange(n + 1)
    lo = torch.where(below <= alpha / 2, k, -1).amax(-1)
    hi = torch.where(above <= alpha / 2, k, n + 1).amin(-1)
    tail = below.gather(-1, lo[:, None])[:, 0] + above.gather(-1, hi[:, None])[:, 0]
    return lo, hi, tail


def groups(probs: Tensor) -> list[tuple[Tensor, Tensor]]:
    """``[(rows, p)]``: the rows of ``probs`` ``(N, V)`` that share one distribution."""
    key = (probs * 1e9).round()
    weights = torch.linspace(1.0, 2.0, probs.size(-1), dtype=torch.float64).sqrt()
    _, inverse = torch.unique(key @ weights, return_inverse=True)  # one number per row
    found = []
    for g in range(int(inverse.max()) + 1 if inverse.numel() else 0):
        rows = (inverse == g).nonzero()[:, 0]
        if not torch.equal(key[rows], key[rows[:1]].expand(rows.numel(), -1)):
            raise ValueError("two different distributions share a grouping key")
        found.append((rows, probs[rows[0]]))
    return found


def frequency_problem(tokens: Tensor, probs: Tensor, alpha: float = ALPHA) -> str | None:
    """None when ``tokens`` ``(N,)`` (one draw per row) fit ``probs`` ``(N, V)``;
    otherwise what is wrong, in words."""
    vocab = probs.size(-1)
    if tokens.shape != probs.shape[:1]:
        return f"shape {tuple(tokens.shape)}, expected {tuple(probs.shape[:1])}"
    if tokens.dtype != torch.long:
        return f"dtype {tokens.dtype}, expected torch.int64"
    outside = (tokens < 0) | (tokens >= vocab)
    if outside.any():
        return f"token id {int(tokens[outside][0])} is not in the vocabulary (0 to {vocab - 1})"
    for rows, p in groups(probs):
        n = rows.numel()
        counts = torch.bincount(tokens[rows], minlength=vocab)
        never = (p == 0) & (counts > 0)
        if never.any():
            v = int(never.nonzero()[0])
            kept = (p > 0).nonzero()[:, 0].tolist()
            return (f"token {v} was drawn {int(counts[v])} times in {n} rows where it is not "
                    f"among the tokens that may be drawn ({kept})")
        kept = (p > 0).nonzero()[:, 0]
        lo, hi, _ = acceptance(n, p[kept], alpha)
        bad = ((counts[kept] < lo) | (counts[kept] > hi)).nonzero()
        if bad.numel():
            i = int(bad[0])
            v = int(kept[i])
            return (f"token {v} was drawn {int(counts[v])} times in {n} rows; with probability "
                    f"{float(p[v]):.4f} a correct sampler draws it between {int(lo[i])} and "
                    f"{int(hi[i])} times")
    return None


def false_fail_probability(probs: Tensor, alpha: float = ALPHA) -> float:
    """Union bound on the probability that a correct sampler fails
    :func:`frequency_problem` on ``probs``: the sum of the exact tails of its tests."""
    total = 0.0
    for rows, p in groups(probs):
        total += float(acceptance(rows.numel(), p[p > 0], alpha)[2].sum())
    return total


def pass_probability(probs: Tensor, wrong: Tensor, alpha: float = ALPHA) -> float:
    """Upper bound on the probability that a sampler drawing row ``i`` from ``wrong[i]``
    passes :func:`frequency_problem` on ``probs``: the smallest pass probability of any
    one of its tests. Rows of a group may draw from different wrong distributions: a
    count is then a sum of binomials, whose distribution is their convolution."""
    best = 1.0
    for rows, p in groups(probs):
        n = rows.numel()
        kept = p > 0
        lo, hi, _ = acceptance(n, p[kept], alpha)
        counts = torch.ones(int(kept.sum()), 1, dtype=torch.float64)  # P(count = 0) = 1
        outside = 1.0
        for sub, q in groups(wrong[rows]):
            outside *= (1.0 - float(q[~kept].sum())) ** sub.numel()
            counts = _convolve(counts, binomial_pmf(sub.numel(), q[kept]))
        k = torch.arange(n + 1)
        inside = (k >= lo[:, None]) & (k <= hi[:, None])
        best = min(best, outside, float((counts * inside).sum(-1).min()))
    return best


def _convolve(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise convolution of two stacks of distributions over counts."""
    if a.size(1) > b.size(1):
        a, b = b, a
    out = torch.zeros(a.size(0), a.size(1) + b.size(1) - 1, dtype=torch.float64)
    for j in range(a.size(1)):
        out[:, j : j + b.size(1)] += b * a[:, j : j + 1]
    return out
