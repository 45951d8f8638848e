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

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from types import SimpleNamespace

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from tqdm.auto import tqdm

from transformer_course import attention as _attention
from transformer_course import multi_head as _multi_head
from transformer_course.device import resolve
from transformer_course.experiments.blocks import blocks_for
from transformer_course.experiments.threads import torch_threads
from transformer_course.why import rnn_forward

LAYERS = ("RNN (Python loop)", "nn.LSTM (C++ loop)", "self-attention (as written)", "self-attention (fused)")

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


def _blocks(blocks: object | None) -> SimpleNamespace:
    """``MultiHeadAttention`` and ``causal_mask`` from ``blocks`` (None: the course's reference)."""
    return blocks_for("the timing experiment", blocks, {
        "MultiHeadAttention": _multi_head.MultiHeadAttention, "causal_mask": _attention.causal_mask})


@contextmanager
def sequence_layers(
    d_model: int = 64,
    n_heads: int = 4,
    rnn: Callable[..., tuple[Tensor, Tensor]] = rnn_forward,
    seed: int = 0,
    device: torch.device | str = "cpu",
    blocks: object | None = None,
) -> Iterator[dict[str, Layer]]:
    """The four layers the experiments compare, of width ``d_model``, on ``device``,
    for the duration of the ``with`` block:

    - ``"RNN (Python loop)"``: ``rnn`` (chapter 9 passes the student's ``rnn_forward``),
      one Python step per token;
    - ``"nn.LSTM (C++ loop)"``: PyTorch's LSTM, one compiled step per token (cuDNN on a
      GPU);
    - ``"self-attention (as written)"``: ``blocks.MultiHeadAttention`` with the causal
      mask of ``blocks.causal_mask``, which builds the full ``(L, L)`` weight matrix of
      every head;
    - ``"self-attention (fused)"``: the same weights in PyTorch's ``nn.MultiheadAttention``
      (:func:`~transformer_course.multi_head.copy_to_torch`), which in inference runs the
      whole layer as one fused operation, whichever way the module above was written.

    Args:
        blocks: where ``MultiHeadAttention`` and ``causal_mask`` come from (chapter 9
            passes the student's, see :mod:`~transformer_course.experiments.blocks`);
            None: the course's reference.

    Raises:
        ValueError: when the two attention layers disagree (the fused one reads the
            weights by the names ``w_q``, ``w_k``, ``w_v``, ``w_o``).
    """
    parts = _blocks(blocks)
    torch.manual_seed(seed)
    cell = nn.RNN(d_model, d_model, batch_first=True).to(device)  # only a holder for the weights
    lstm = nn.LSTM(d_model, d_model, batch_first=True).to(device)
    attention = parts.MultiHeadAttention(d_model, n_heads).to(device).eval()
    fast = nn.MultiheadAttention(d_model, n_heads, bias=attention.w_q.bias is not None,
                                 batch_first=True, device=device).eval()
    _multi_head.copy_to_torch(attention, fast)
    weights = (cell.weight_ih_l0, cell.weight_hh_l0, cell.bias_ih_l0, cell.bias_hh_l0)

    def fused(x: Tensor, mask: Tensor) -> Tensor:
        # PyTorch's mask hides where it is True, the course's where it is False.
        return fast(x, x, x, attn_mask=~mask, need_weights=False, is_causal=True)[0]

    with torch.no_grad():
        x = torch.randn(2, 5, d_model, device=device)
        mask = parts.causal_mask(5).to(device)
        if not torch.allclose(fused(x, mask), attention(x, x, x, mask), rtol=1e-4, atol=1e-5):
            raise ValueError(
                f"{type(attention).__name__}'s weights in nn.MultiheadAttention give other outputs: "
                "the fused layer reads its projections by the names w_q, w_k, w_v and w_o"
            )
        yield {
            "RNN (Python loop)": lambda x, mask: rnn(x, *weights),
            "nn.LSTM (C++ loop)": lambda x, mask: lstm(x),
            "self-attention (as written)": lambda x, mask: attention(x, x, x, mask),
            "self-attention (fused)": fused,
        }


def _time_shapes(
    shapes: list[tuple[int, int]], d_model: int, n_heads: int, repeats: int,
    rnn: Callable[..., tuple[Tensor, Tensor]], seed: int, num_threads: int | None,
    device: torch.device | str | None, blocks: object | None, desc: str,
) -> dict[str, list[float]]:
    """Seconds per forward pass of every layer of :func:`sequence_layers`, for each
    ``(batch, length)`` in ``shapes``."""
    device = resolve(device)
    sync = _synchronizer(device)
    parts = _blocks(blocks)
    with sequence_layers(d_model, n_heads, rnn, seed, device, parts) as layers, torch_threads(num_threads):
        times: dict[str, list[float]] = {name: [] for name in layers}
        for batch, length in tqdm(shapes, desc=desc):
            x = torch.randn(batch, length, d_model, device=device)
            mask = parts.causal_mask(length).to(device)
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
    blocks: object | None = None,
) -> dict[str, list[float]]:
    """Seconds per forward pass (:func:`time_call`) of the layers of
    :func:`sequence_layers` (built from ``rnn`` and ``blocks``) on inputs
    ``(batch, L, d_model)``, for each length in ``lengths``.

    ``rnn`` is the Python-loop RNN (default: the course's reference
    :func:`~transformer_course.why.rnn_forward`) and ``blocks`` gives
    ``MultiHeadAttention`` and ``causal_mask`` (None: the course's reference); chapter 9
    passes the student's.

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
                        seed, num_threads, device, blocks, "timing lengths")


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
    blocks: object | None = None,
) -> dict[str, list[float]]:
    """Seconds per forward pass of the layers of :func:`sequence_layers` on inputs
    ``(B, length, d_model)``, for each ``B`` in ``batch_sizes``; ``device``,
    ``num_threads``, ``rnn`` and ``blocks`` as in :func:`time_sequence_models`.

    Hardware with many parallel units does a larger batch in about the same time until
    its units are busy; a machine without spare units takes proportionally longer.

    Returns:
        ``{layer name: [seconds for each batch size]}``.
    """
    return _time_shapes([(batch, length) for batch in batch_sizes], d_model, n_heads, repeats, rnn,
                        seed, num_threads, device, blocks, "timing batch sizes")


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
    blocks: object | None = None,
) -> dict[str, list[int]]:
    """How many tensor operations one forward pass of each layer of
    :func:`sequence_layers` (built from ``rnn`` and ``blocks``) dispatches, on the CPU,
    for each length in ``lengths``.

    Operations run one after another; on a GPU each is at least one kernel launch. The
    Python loop dispatches a few per token. ``nn.LSTM`` dispatches one operation,
    ``aten::lstm``, whose own loop over the ``L`` steps runs inside it, so its count says
    nothing about its sequential steps.

    Returns:
        ``{layer name: [operations for each length]}``.
    """
    parts = _blocks(blocks)
    with sequence_layers(d_model, n_heads, rnn, blocks=parts) as layers:
        counts: dict[str, list[int]] = {name: [] for name in layers}
        for length in lengths:
            x, mask = torch.randn(batch, length, d_model), parts.causal_mask(length)
            for name, layer in layers.items():
                with _OperationCounter() as counter:
                    layer(x, mask)
                counts[name].append(counter.count)
    return counts
