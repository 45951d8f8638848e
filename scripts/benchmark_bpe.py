"""Time chapter 7's BPE training: about 130 kB of English from the course corpus to a
vocabulary of 500 (one special token), on one CPU thread, the limit CS336 sets for its
tokenizer being 1.5 s.

    python scripts/benchmark_bpe.py [--kb 130] [--vocab-size 500] [--repeats 5]

Prints the best and the median of the repeats, with the machine's processor. A
benchmark, not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from transformer_course.corpus import load_text
from transformer_course.tokenizer import train_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=float, default=130.0, help="kilobytes of text to train on")
    parser.add_argument("--vocab-size", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the training is pure Python; keep it to one core anyway
    text = load_text().encode()[: int(args.kb * 1000)].decode("utf-8", errors="ignore")
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        vocab, merges = train_tokenizer(text, args.vocab_size, ["<|endoftext|>"])
        times.append(time.perf_counter() - start)
    print(f"{len(text.encode()) / 1000:.0f} kB -> vocabulary {len(vocab)} ({len(merges)} merges): "
          f"best {min(times):.3f} s, median {statistics.median(times):.3f} s over {args.repeats} runs "
          f"on {platform.processor() or platform.machine()} ({platform.python_implementation()} "
          f"{platform.python_version()})")


if __name__ == "__main__":
    main()
