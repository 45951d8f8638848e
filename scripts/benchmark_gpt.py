"""Benchmark chapter 6's GPT on this machine (not a test).

Four measurements, in one process so that they share the machine's state:

1. **Throughput**: tokens per second of the chapter's training step (forward, backward,
   gradient clipping, AdamW) for the course's ``GPT`` and for the same model built from
   ``torch.nn.TransformerEncoderLayer`` (pre-norm, GELU, causal mask with
   ``is_causal=True``, PyTorch's fused attention): the in-tree fused baseline. The two
   alternate in short rounds on the same batches and each keeps its fastest round, the
   one least disturbed by other programs.
2. **Training for a wall-clock budget** (default 180 s of training; evaluation not
   counted) with ``train_language_model``, the chapter's recipe: batch 8 x 128, AdamW,
   learning rate 2e-3 with warmup and a cosine decay to 2e-4 over the budget.
3. **Validation loss** of the trained model: 200 random batches of 8 windows of 128
   characters of the validation text (the course's ``train_val_split``), loss at every
   position.
4. **The kernels' floor**: the time of the step's matrix products (every linear layer's
   forward product and its two backward products, at the model's shapes) and of the fused
   attention's forward and backward passes, each with nothing else around it, timed in the
   same rounds as step 1. No float32 implementation of this model trains faster than that
   on the same machine; the rest of a step is norms, GELU, the loss, the optimizer and
   Python.

The last line is machine-readable::

    RESULT tokens_per_s=<n> baseline_tokens_per_s=<n> val_loss=<x> train_seconds=<s>

``tokens_per_s`` is the training run's own rate (step 2); the comparison with the
baseline uses the rates of step 1.

Usage::

    python scripts/benchmark_gpt.py [--seconds 180] [--threads 2] [--profile]

What the profiler showed (``--profile`` prints the top entries of ten training steps;
chapter 6 model, one thread; measured on a shared 2-core machine under heavy load, so
the shares matter more than the times):

- Before, the unfused attention was about 40% of the step (the fused kernel alone made
  steps 1.75x faster in the same measurement): per layer, the score
  product, the division by sqrt(d_k), ``masked_fill``, the hand-written softmax
  (``amax``, ``sub``, ``exp``, ``sum``, ``div``), ``nan_to_num`` and the weights
  product, each with its backward pass on an ``(8, 4, 128, 128)`` tensor, plus the
  detached copy kept for heatmaps. ``bmm``, ``div``, ``exp``, ``masked_fill_``,
  ``nan_to_num``, ``eq``, ``ne`` and ``neg`` were among the top 20 entries, and
  ``copy_`` had 4,370 calls in ten steps.
- AdamW's default on a CPU is a Python loop over the 68 parameter tensors (``mul_``,
  ``lerp_``, ``sqrt``, ``div_`` and ``add_`` called 680 times each in ten steps); its
  share was 4 to 6% of the step. The fused AdamW (``fused=True``) does the update in one
  kernel per parameter group: 1.5% of the step after the change, and a third of the
  time in isolation.
- After (fused attention, fused AdamW): the matrix products of the projections, the
  feed-forward network and the output head (``mm``, ``addmm``) are 57% of the step,
  the flash-attention kernels 19%, GELU 7.5%; ``copy_`` is down to 890 calls. The
  course's model now does what the baseline does, so the rest is the model itself.
- Not worth changing: drawing the batch (``get_batch``, 0.04 ms a step, no faster
  with vectorised indexing), the learning-rate update and ``loss.item()``
  (microseconds on a CPU), gradient clipping (about 1.5 ms a step; ``foreach=True`` is
  no faster here).
- The fused attention here is ``fused_kernels`` (the training helpers' ``fused=True``):
  the course's module runs as written with its attention call routed to PyTorch's
  kernel. ``scripts/benchmark_fused.py`` times chapters 5 and 6 with and without it.
- Threads: on an idle machine use one thread per core (the default here is 2). On a
  busy one, threads that wait for each other make a step many times slower; one
  thread per process is then faster.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_course.attention import causal_mask
from transformer_course.corpus import get_batch, load_corpus
from transformer_course.gpt import GPT
from transformer_course.multi_head import fused_kernels
from transformer_course.training import estimate_lm_loss, train_language_model, window_loss

# The chapter's model and recipe (solutions/06_llm.ipynb, full setting).
CONFIG = {"d_model": 128, "n_heads": 4, "n_layers": 4}
BLOCK_SIZE, BATCH_SIZE = 128, 8
MAX_LR, MIN_LR, WARMUP = 2e-3, 2e-4, 100
STEPS_PER_SECOND_GUESS = 40  # sets the schedule's length in steps; time ends it sooner
VAL_BATCHES = 200


class TorchLayersGPT(nn.Module):
    """The chapter's GPT with PyTorch's own ``nn.TransformerEncoderLayer`` blocks
    (pre-norm, GELU, causal): ``(B, L)`` token ids -> ``(B, L, V)`` logits."""

    def __init__(self, vocab_size: int, max_len: int, d_model: int, n_heads: int, n_layers: int):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight

    def forward(self, idx: Tensor) -> Tensor:
        hidden = ~causal_mask(idx.size(1))  # PyTorch's convention: True = hidden
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(idx.size(1)))
        for block in self.blocks:
            x = block(x, src_mask=hidden, is_causal=True)
        return self.lm_head(self.ln_f(x))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, windows: Tensor) -> None:
    """One step of the chapter's recipe on ``windows (B, L + 1)``."""
    loss = window_loss(model, windows)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def time_steps(steps: dict[str, Callable[[Tensor], None]], data: Tensor, rounds: int = 5,
               n_steps: int = 20) -> dict[str, float]:
    """Seconds per step of each function of a batch ``(B, L + 1)``: the fastest of
    ``rounds`` rounds of ``n_steps`` steps, the functions taking turns on the same batches
    so that they share whatever else the machine is doing."""
    generator = torch.Generator().manual_seed(0)
    batches = [get_batch(data, BATCH_SIZE, BLOCK_SIZE + 1, generator) for _ in range(n_steps)]
    best = dict.fromkeys(steps, math.inf)
    for step in steps.values():  # warm-up: allocator and kernel caches
        for windows in batches[:3]:
            step(windows)
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for windows in batches:
                step(windows)
            best[name] = min(best[name], (time.perf_counter() - start) / n_steps)
    return best


def profile_step(model: GPT, data: Tensor, steps: int = 10, rows: int = 15) -> str:
    """The profiler's table (by self CPU time) of ``steps`` training steps of ``model``."""
    from torch.profiler import ProfilerActivity, profile

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    generator = torch.Generator().manual_seed(0)
    model.train()
    with fused_kernels(model):
        train_step(model, optimizer, get_batch(data, BATCH_SIZE, BLOCK_SIZE + 1, generator))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                train_step(model, optimizer, get_batch(data, BATCH_SIZE, BLOCK_SIZE + 1, generator))
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def kernel_floor(vocab_size: int) -> dict[str, Callable[[Tensor], None]]:
    """The work of one training step of the chapter's model that no implementation can
    skip, as two functions of a batch (which they ignore): ``"matmul"``, every linear
    map's forward product and its two backward products at the model's shapes, and
    ``"attention"``, the fused attention's forward and backward passes."""
    d, heads, layers = CONFIG["d_model"], CONFIG["n_heads"], CONFIG["n_layers"]
    tokens = BATCH_SIZE * BLOCK_SIZE
    # (in, out) of every linear map in a step: Q, K and V stacked, output, the two
    # feed-forward layers, once per layer; the output head once.
    shapes = [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)] * layers + [(d, vocab_size)]
    operands = [(torch.randn(tokens, n_in), torch.randn(n_in, n_out), torch.randn(tokens, n_out))
                for n_in, n_out in shapes]
    q, k, v = (torch.randn(BATCH_SIZE, heads, BLOCK_SIZE, d // heads, requires_grad=True) for _ in range(3))

    def products(_: Tensor) -> None:
        for x, w, grad in operands:  # forward, then the gradients of the input and the weight
            x @ w, grad @ w.T, x.T @ grad

    def attention(_: Tensor) -> None:
        for _ in range(layers):
            F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()

    return {"matmul": products, "attention": attention}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="training budget (default 180)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--profile", action="store_true", help="print the profiler's top entries")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = load_corpus()
    vocab_size = corpus.tokenizer.vocab_size

    torch.manual_seed(0)
    models = {"course": GPT(vocab_size, BLOCK_SIZE, **CONFIG),
              "baseline": TorchLayersGPT(vocab_size, BLOCK_SIZE, **CONFIG)}
    n_params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    print(f"model: {CONFIG}, block {BLOCK_SIZE}, batch {BATCH_SIZE}, {torch.get_num_threads()} threads; "
          f"parameters: course {n_params['course']:,}, nn.TransformerEncoderLayer {n_params['baseline']:,}")
    if args.profile:
        print(profile_step(models["course"], corpus.train))
    steps = {name: partial(train_step, model.train(), torch.optim.AdamW(model.parameters(), fused=True))
             for name, model in models.items()}
    with fused_kernels(models["course"]):
        seconds = time_steps(steps | kernel_floor(vocab_size), corpus.train)
    tokens = BATCH_SIZE * BLOCK_SIZE
    rate = {name: tokens / seconds[name] for name in models}
    print(f"throughput: course {rate['course']:,.0f} tokens/s, nn.TransformerEncoderLayer baseline "
          f"{rate['baseline']:,.0f} tokens/s, ratio {rate['course'] / rate['baseline']:.2f}")
    floor = seconds["matmul"] + seconds["attention"]
    print(f"floor: the step's matrix products alone {1e3 * seconds['matmul']:.1f} ms, its fused attention "
          f"alone {1e3 * seconds['attention']:.1f} ms: at most {tokens / floor:,.0f} tokens/s; "
          f"the course's step ({1e3 * seconds['course']:.1f} ms) spends {floor / seconds['course']:.0%} "
          "of its time in them")

    torch.manual_seed(0)
    model = GPT(vocab_size, BLOCK_SIZE, **CONFIG)
    history = train_language_model(
        model, corpus.train, corpus.val, steps=int(STEPS_PER_SECOND_GUESS * args.seconds),
        batch_size=BATCH_SIZE, block_size=BLOCK_SIZE, max_lr=MAX_LR, min_lr=MIN_LR,
        warmup_steps=WARMUP, eval_interval=10**9, eval_batches=1, max_seconds=args.seconds)
    steps, seconds = len(history["batch_loss"]), history["seconds"][-1]
    tokens_per_s = steps * BATCH_SIZE * BLOCK_SIZE / seconds
    val_loss = estimate_lm_loss(model, corpus.val, BATCH_SIZE, BLOCK_SIZE, VAL_BATCHES)
    print(f"training: {steps} steps in {seconds:.1f} s, {tokens_per_s:,.0f} tokens/s; validation loss "
          f"{val_loss:.4f} nats per character ({VAL_BATCHES} batches of {BATCH_SIZE} x {BLOCK_SIZE})")
    print(f"RESULT tokens_per_s={tokens_per_s:.0f} baseline_tokens_per_s={rate['baseline']:.0f} "
          f"val_loss={val_loss:.4f} train_seconds={seconds:.1f}")


if __name__ == "__main__":
    main()
