"""Parallel processing: time per forward pass of a recurrent loop and of self-attention.

A recurrent layer has to finish step ``t - 1`` before it can start step ``t``;
self-attention computes every position at once. :func:`time_sequence_models` times both
kinds of layer, at one width, for growing sequence lengths.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from transformer_course.attention import causal_mask
from transformer_course.experiments.threads import torch_threads
from transformer_course.multi_head import MultiHeadAttention, fused_kernels
from transformer_course.why import rnn_forward


def time_call(fn: Callable[[], object], repeats: int = 5, min_time: float = 0.2) -> float:
    """Wall-clock seconds of ``fn()``: the fastest of at least ``repeats`` runs (more for
    a fast call, until ``min_time`` seconds have passed), after a warm-up run. The
    fastest run is the one least disturbed by other programs on the machine."""
    fn()
    best, spent, runs = math.inf, 0.0, 0
    while runs < repeats or spent < min_time:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, spent, runs = min(best, elapsed), spent + elapsed, runs + 1
    return best


def time_sequence_models(
    lengths: list[int],
    d_model: int = 64,
    batch: int = 8,
    n_heads: int = 4,
    repeats: int = 5,
    rnn: Callable[..., tuple[Tensor, Tensor]] = rnn_forward,
    seed: int = 0,
    num_threads: int | None = 1,
) -> dict[str, list[float]]:
    """Seconds per forward pass (:func:`time_call`) of four sequence layers of width
    ``d_model`` on inputs ``(batch, L, d_model)``, for each length in ``lengths``.

    - ``"RNN (Python loop)"``: ``rnn`` (your ``rnn_forward``), one Python step per token;
    - ``"nn.LSTM (C++ loop)"``: PyTorch's LSTM, one compiled step per token;
    - ``"self-attention (course)"``: the chapter 02 ``MultiHeadAttention`` with a causal
      mask, which builds the full ``(L, L)`` weight matrix of every head;
    - ``"self-attention (fused)"``: the same module inside
      :func:`~transformer_course.multi_head.fused_kernels`: the same weights and result,
      its attention call through ``F.scaled_dot_product_attention(is_causal=True)``,
      PyTorch's fused kernel, which never stores that matrix.

    The timing runs on ``num_threads`` threads
    (:func:`~transformer_course.experiments.threads.torch_threads`; None keeps torch's
    setting). One thread by default: on a machine whose cores are busy,
    threads that wait for each other can make single calls hundreds of times slower
    and the timings meaningless.

    Returns:
        ``{model name: [seconds for each length]}``.
    """
    torch.manual_seed(seed)
    cell = nn.RNN(d_model, d_model, batch_first=True)  # only a holder for the weights
    lstm = nn.LSTM(d_model, d_model, batch_first=True)
    attention = MultiHeadAttention(d_model, n_heads).eval()
    weights = (cell.weight_ih_l0, cell.weight_hh_l0, cell.bias_ih_l0, cell.bias_hh_l0)

    times: dict[str, list[float]] = {"RNN (Python loop)": [], "nn.LSTM (C++ loop)": [],
                                     "self-attention (course)": [], "self-attention (fused)": []}
    with torch.no_grad(), torch_threads(num_threads):
        for length in tqdm(lengths, desc="timing"):
            x = torch.randn(batch, length, d_model)
            mask = causal_mask(length)
            times["RNN (Python loop)"].append(time_call(partial(rnn, x, *weights), repeats))
            times["nn.LSTM (C++ loop)"].append(time_call(partial(lstm, x), repeats))
            times["self-attention (course)"].append(time_call(partial(attention, x, x, x, mask), repeats))
            with fused_kernels(attention):
                times["self-attention (fused)"].append(time_call(partial(attention, x, x, x, mask), repeats))
    return times
