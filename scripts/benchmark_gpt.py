"""Benchmark chapter 06's GPT on this machine (not a test).

Reports training throughput (tokens per second through forward, backward and an AdamW
step) and generation throughput with and without the KV cache, for the chapter's model
size, and the cache's speedup at 500 new tokens.

    python scripts/benchmark_gpt.py [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from transformer_course.corpus import get_batch, load_corpus
from transformer_course.gpt import GPT, generate, next_token_loss

# The chapter's model (solutions/06_llm.ipynb, full setting).
CONFIG = {"d_model": 128, "n_heads": 4, "n_layers": 4}
BLOCK_SIZE, BATCH_SIZE = 128, 8


def training_tokens_per_second(model: GPT, data: torch.Tensor, steps: int = 30) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for step in range(steps + 3):
        if step == 3:  # the first steps warm up allocators and caches
            start = time.perf_counter()
        tokens = get_batch(data, BATCH_SIZE, BLOCK_SIZE, generator)
        loss = next_token_loss(model(tokens), tokens)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    return steps * BATCH_SIZE * BLOCK_SIZE / (time.perf_counter() - start)


def generation_seconds(model: GPT, new_tokens: int, use_cache: bool) -> float:
    prompt = torch.zeros(1, 1, dtype=torch.long)
    start = time.perf_counter()
    generate(model, prompt, new_tokens, generator=torch.Generator().manual_seed(0), use_cache=use_cache)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--new-tokens", type=int, default=500)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = load_corpus()
    torch.manual_seed(0)
    model = GPT(corpus.tokenizer.vocab_size, BLOCK_SIZE, **CONFIG)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {CONFIG}, block {BLOCK_SIZE}, {n_params / 1e6:.2f} M parameters, "
          f"{torch.get_num_threads()} threads")
    print(f"training: {training_tokens_per_second(model, corpus.train):,.0f} tokens/s "
          f"(batch {BATCH_SIZE} x {BLOCK_SIZE})")
    # Generation runs past the trained block size, so time it on the same architecture
    # with room for every position (weights do not change the speed).
    long_model = GPT(corpus.tokenizer.vocab_size, args.new_tokens + 1, **CONFIG).eval()
    generation_seconds(long_model, 5, use_cache=True)  # warm-up
    seconds = {c: generation_seconds(long_model, args.new_tokens, c) for c in (False, True)}
    for use_cache, s in seconds.items():
        print(f"generation, use_cache={use_cache}: {args.new_tokens / s:,.0f} tokens/s "
              f"({args.new_tokens} new tokens in {s:.2f} s)")
    print(f"KV-cache speedup at {args.new_tokens} new tokens: {seconds[False] / seconds[True]:.1f}x")


if __name__ == "__main__":
    main()
