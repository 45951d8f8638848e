"""Time chapters 5 and 6's training with the code as written and with ``fused=True``
(not a test).

For each chapter, the chapter's model, batch and optimizer (full setting) train for
``--steps`` steps with :func:`transformer_course.training.train_loop`, once with
``fused=False`` (every module runs its code as written: the course's attention and
LayerNorm formulas) and once with ``fused=True`` (the attention call and the LayerNorms
through PyTorch's kernels, :func:`transformer_course.multi_head.fused_kernels`). The two
settings alternate in ``--rounds`` rounds in one process, each from a fresh model with
the same seed, and each keeps its fastest round (the one least disturbed by other
programs). The full setting's time is the time per step times its number of steps
(chapter 5: 2,000 steps; chapter 6: 4,500 steps, which its notebook caps at 180 s of
training).

The last line is machine-readable::

    RESULT ch05_ms=<as written>/<fused> ch06_ms=<as written>/<fused> threads=<n>

Usage::

    python scripts/benchmark_fused.py [--steps 40] [--rounds 3] [--threads 1]

Measured on the shared 2-core development machine (load average 1 to 3 from other
programs), ``--steps 20 --rounds 3 --threads 1``: chapter 5, 79.3 ms per step as
written and 49.7 ms fused (1.60x; 2,000 steps: 159 s against 99 s); chapter 6, 168.7 ms
and 83.7 ms (2.02x; its GPT uses ``nn.LayerNorm``, so only the attention call changes:
within the 180 s budget, 1,067 steps as written against 2,150 fused). Under load
absolute times are several times those of an idle machine; compare settings within one
run only.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import torch
from torch import nn

from transformer_course import dates
from transformer_course.corpus import get_batch, load_corpus
from transformer_course.decoder import Transformer
from transformer_course.gpt import GPT
from transformer_course.training import seq2seq_loss, train_loop, window_loss

FULL_STEPS = {"05_decoder": 2000, "06_llm": 4500}
CH06_BUDGET_S = 180  # the notebook's max_seconds


def chapter05() -> tuple[nn.Module, Callable[[int], tuple], Callable]:
    """The date model of chapter 5's full setting, and its batches and loss."""
    torch.manual_seed(0)
    model = Transformer(len(dates.SRC_VOCAB), len(dates.TGT_VOCAB), d_model=64, n_heads=4,
                        d_ff=128, n_layers=2, max_len=64)
    rng = random.Random(0)
    return model, lambda step: dates.make_batch(dates.random_pairs(64, "train", rng=rng)), seq2seq_loss


def chapter06() -> tuple[nn.Module, Callable[[int], tuple], Callable]:
    """Chapter 6's character-level GPT (4 layers, width 128, context 128, batch 8)."""
    corpus = load_corpus()
    torch.manual_seed(0)
    model = GPT(corpus.tokenizer.vocab_size, 128, 128, 4, 4)
    generator = torch.Generator().manual_seed(0)
    return model, lambda step: (get_batch(corpus.train, 8, 129, generator),), window_loss


def ms_per_step(build: Callable, steps: int, fused: bool) -> float:
    """Milliseconds per step of ``steps`` training steps of a fresh model (AdamW, fused
    update, as the chapters use), after two warm-up steps."""
    model, get_batch_fn, loss_fn = build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    train_loop(model, optimizer, get_batch_fn, loss_fn, 2, progress=False, fused=fused, device="cpu")
    start = time.perf_counter()
    train_loop(model, optimizer, get_batch_fn, loss_fn, steps, progress=False, fused=fused, device="cpu")
    return 1000 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per round (default 40)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per setting (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for chapter, build in (("05_decoder", chapter05), ("06_llm", chapter06)):
        best = {False: float("inf"), True: float("inf")}
        for _ in range(args.rounds):
            for fused in (False, True):
                best[fused] = min(best[fused], ms_per_step(build, args.steps, fused))
        results[chapter] = best
        full = {fused: FULL_STEPS[chapter] * ms / 1000 for fused, ms in best.items()}
        print(f"{chapter}: {best[False]:.1f} ms per step as written, {best[True]:.1f} ms with "
              f"fused=True ({best[False] / best[True]:.2f}x); the full setting's "
              f"{FULL_STEPS[chapter]} steps: {full[False]:.0f} s as written, {full[True]:.0f} s fused")
        if chapter == "06_llm":
            print(f"  within the notebook's {CH06_BUDGET_S} s budget: "
                  f"{CH06_BUDGET_S * 1000 / best[False]:.0f} steps as written, "
                  f"{CH06_BUDGET_S * 1000 / best[True]:.0f} steps fused (capped at 4500)")
    print(f"RESULT ch05_ms={results['05_decoder'][False]:.1f}/{results['05_decoder'][True]:.1f} "
          f"ch06_ms={results['06_llm'][False]:.1f}/{results['06_llm'][True]:.1f} threads={args.threads}")


if __name__ == "__main__":
    main()
