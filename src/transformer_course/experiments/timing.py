"""Parallel processing: what a recurrent loop and self-attention cost, measured.

A recurrent layer has to finish step ``t - 1`` before it can start step ``t``;
self-attention computes every position at once. Three measurements of four layers of
one width (:func:`sequence_layers`):

- :func:`time_sequence_models`: seconds per forward pass for growing sequence lengths;
- :func:`time_batch_sizes`: seconds per forward pass for growing batches at one length,
  which shows how much of the machine's parallel hardware each layer can use;
- :func:`count_operations`: how many tensor operations one forward pass dispatches, one
  after another, for growing lengths (on a GPU, each is a kernel launch).

Timings run on ``device`` (a GPU when there is one, see
:func:`transformer_course.device.default_device`); CUDA work is asynchronous, so the
clock stops only after :func:`torch.cuda.synchronize`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from tqdm.auto import tqdm

from transformer_course.attention import causal_mask
from transformer_course.device import resolve
from transformer_course.experiments.threads import torch_threads
from transformer_course.multi_head import MultiHeadAttention, fused_kernels
from transformer_course.why import rnn_forward

LAYERS = ("RNN (Python loop)", "nn.LSTM (C++ loop)", "self-attention (course)", "self-attention (fused)")

# A layer as the timers call it: ``(x (B, L, D), causal mask (L, L)) -> output``.
Layer = Callable[[Tensor, Tensor], object]


def _synchronizer(device: torch.device) -> Callable[[], None]:
    """What waits for ``device`` to finish its queued work (nothing on the CPU)."""
    if device.type == "cuda":
        return partial(torch.cuda.synchronize, device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def time_call(fn: Callable[[], object], repeats: int = 5, min_time: float = 0.2,
              sync: Callable[[], None] = lambda: None) -> float:
    """Wall-clock seconds of ``fn()``: the fastest of at least ``repeats`` runs (more for
    a fast call, until ``min_time`` seconds have passed), after a warm-up run. The
    fastest run is the one least disturbed by other programs on the machine.

    ``sync`` waits for a device's queued work (``torch.cuda.synchronize`` on a GPU): it
    runs before the clock starts and before it stops, so an asynchronous launch is not
    mistaken for the work itself."""
    fn()
    sync()
    best, spent, runs = math.inf, 0.0, 0
    while runs < repeats or spent < min_time:
        start = time.perf_counter()
        fn()
        sync()
        elapsed = time.perf_counter() - start
        best, spent, runs = min(best, elapsed), spent + elapsed, runs + 1
    return best


@contextmanager
def sequence_layers(
    d_model: int = 64,
    n_heads: int = 4,
    rnn: Callable[..., tuple[Tensor, Tensor]] = rnn_forward,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Iterator[dict[str, Layer]]:
    """The four layers the experiments compare, of width ``d_model``, on ``device``,
    for the duration of the ``with`` block:

    - ``"RNN (Python loop)"``: ``rnn`` (your ``rnn_forward``), one Python step per token;
    - ``"nn.LSTM (C++ loop)"``: PyTorch's LSTM, one compiled step per token (cuDNN on a
      GPU);
    - ``"self-attention (course)"``: the chapter 2 ``MultiHeadAttention`` with a causal
      mask, which builds the full ``(L, L)`` weight matrix of every head;
    - ``"self-attention (fused)"``: a copy of the same module (the same weights) inside
      :func:`~transformer_course.multi_head.fused_kernels`, its attention call through
      ``F.scaled_dot_product_attention(is_causal=True)``, PyTorch's fused kernel, which
      never stores that matrix.

    The switch is entered once for the whole block and its one-time comparison of the
    two paths runs before the block starts, so what is timed or counted is the fused
    path alone.
    """
    torch.manual_seed(seed)
    cell = nn.RNN(d_model, d_model, batch_first=True).to(device)  # only a holder for the weights
    lstm = nn.LSTM(d_model, d_model, batch_first=True).to(device)
    attention = MultiHeadAttention(d_model, n_heads).to(device).eval()
    fast = copy.deepcopy(attention)
    weights = (cell.weight_ih_l0, cell.weight_hh_l0, cell.bias_ih_l0, cell.bias_hh_l0)

    with fused_kernels(fast), torch.no_grad():
        x = torch.randn(1, 4, d_model, device=device)
        fast(x, x, x, causal_mask(4).to(device))  # the switch's first-call check, done here
        yield {
            "RNN (Python loop)": lambda x, mask: rnn(x, *weights),
            "nn.LSTM (C++ loop)": lambda x, mask: lstm(x),
            "self-attention (course)": lambda x, mask: attention(x, x, x, mask),
            "self-attention (fused)": lambda x, mask: fast(x, x, x, mask),
        }


def _time_shapes(
    shapes: list[tuple[int, int]], d_model: int, n_heads: int, repeats: int,
    rnn: Callable[..., tuple[Tensor, Tensor]], seed: int, num_threads: int | None,
    device: torch.device | str | None, desc: str,
) -> dict[str, list[float]]:
    """Seconds per forward pass of every layer of :func:`sequence_layers`, for each
    ``(batch, length)`` in ``shapes``."""
    device = resolve(device)
    sync = _synchronizer(device)
    with sequence_layers(d_model, n_heads, rnn, seed, device) as layers, torch_threads(num_threads):
        times: dict[str, list[float]] = {name: [] for name in layers}
        for batch, length in tqdm(shapes, desc=desc):
            x = torch.randn(batch, length, d_model, device=device)
            mask = causal_mask(length).to(device)
            for name, layer in layers.items():
                times[name].append(time_call(partial(layer, x, mask), repeats, sync=sync))
    return times


def time_sequence_models(
    lengths: list[int],
    d_model: int = 64,
    batch: int = 8,
    n_heads: int = 4,
    repeats: int = 5,
    rnn: Callable[..., tuple[Tensor, Tensor]] = rnn_forward,
    seed: int = 0,
    num_threads: int | None = 1,
    device: torch.device | str | None = None,
) -> dict[str, list[float]]:
    """Seconds per forward pass (:func:`time_call`) of the layers of
    :func:`sequence_layers` on inputs ``(batch, L, d_model)``, for each length in
    ``lengths``.

    The timing runs on ``device`` (None: :func:`~transformer_course.device.default_device`,
    a GPU when there is one) and, on the CPU, on ``num_threads`` threads
    (:func:`~transformer_course.experiments.threads.torch_threads`; None keeps torch's
    setting). One thread by default: on a machine whose cores are busy, threads that
    wait for each other can make single calls hundreds of times slower and the timings
    meaningless.

    Returns:
        ``{layer name: [seconds for each length]}``.
    """
    return _time_shapes([(batch, length) for length in lengths], d_model, n_heads, repeats, rnn,
                        seed, num_threads, device, "timing lengths")


def time_batch_sizes(
    batch_sizes: list[int],
    length: int = 256,
    d_model: int = 64,
    n_heads: int = 4,
    repeats: int = 5,
    rnn: Callable[..., tuple[Tensor, Tensor]] = rnn_forward,
    seed: int = 0,
    num_threads: int | None = 1,
    device: torch.device | str | None = None,
) -> dict[str, list[float]]:
    """Seconds per forward pass of the layers of :func:`sequence_layers` on inputs
    ``(B, length, d_model)``, for each ``B`` in ``batch_sizes``; ``device`` and
    ``num_threads`` as in :func:`time_sequence_models`.

    Hardware with many parallel units does a larger batch in about the same time until
    its units are busy; a machine without spare units takes proportionally longer.

    Returns:
        ``{layer name: [seconds for each batch size]}``.
    """
    return _time_shapes([(batch, length) for batch in batch_sizes], d_model, n_heads, repeats, rnn,
                        seed, num_threads, device, "timing batch sizes")


class _OperationCounter(TorchDispatchMode):
    """Counts the tensor operations dispatched while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def count_operations(
    lengths: list[int],
    d_model: int = 64,
    batch: int = 8,
    n_heads: int = 4,
    rnn: Callable[..., tuple[Tensor, Tensor]] = rnn_forward,
) -> dict[str, list[int]]:
    """How many tensor operations one forward pass of each layer of
    :func:`sequence_layers` dispatches, on the CPU, for each length in ``lengths``.

    Operations run one after another; on a GPU each is at least one kernel launch. The
    Python loop dispatches a few per token. ``nn.LSTM`` dispatches one operation,
    ``aten::lstm``, whose own loop over the ``L`` steps runs inside it, so its count says
    nothing about its sequential steps.

    Returns:
        ``{layer name: [operations for each length]}``.
    """
    with sequence_layers(d_model, n_heads, rnn) as layers:
        counts: dict[str, list[int]] = {name: [] for name in layers}
        for length in lengths:
            x, mask = torch.randn(batch, length, d_model), causal_mask(length)
            for name, layer in layers.items():
                with _OperationCounter() as counter:
                    layer(x, mask)
                counts[name].append(counter.count)
    return counts
