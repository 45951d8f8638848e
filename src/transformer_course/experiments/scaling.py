"""Scalability: a small scaling curve of chapter 06's GPT.

Kaplan et al. (2020) found that a Transformer language model's loss falls as a power
law in its number of parameters (without the embeddings) when data and compute do not
hold it back. :func:`scaling_experiment` trains several sizes on one budget and reports
what :func:`transformer_course.why.fit_power_law` fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from transformer_course.corpus import get_batch, load_corpus
from transformer_course.experiments.threads import torch_threads
from transformer_course.gpt import GPT, next_token_loss
from transformer_course.multi_head import fused_kernels
from transformer_course.training import train_loop


def non_embedding_parameters(model: nn.Module) -> int:
    """Parameters outside the token and position embeddings of a chapter 06 ``GPT``, the
    size that scaling laws count (Kaplan et al., 2020). The tied output head is the
    token embedding, so it is not counted either."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not name.startswith(("tok_emb.", "pos_emb.")))


@dataclass
class ScalingRun:
    """One model of the scaling curve and how it did."""

    d_model: int
    n_layers: int
    n_params: int
    val_loss: float
    train_losses: list[float]


def scaling_experiment(
    sizes: list[tuple[int, int]],
    steps: int,
    batch_size: int = 32,
    block_size: int = 64,
    lr: float = 3e-3,
    head_dim: int = 8,
    val_batches: int = 4,
    seed: int = 0,
    num_threads: int | None = 1,
) -> list[ScalingRun]:
    """Train one chapter 06 ``GPT`` per ``(d_model, n_layers)`` in ``sizes`` on the
    bundled character-level corpus, all with the same budget (``steps`` batches of
    ``batch_size x block_size`` tokens, the same batches in the same order), and measure
    each one's validation loss (nats per character).

    Heads have ``head_dim`` channels each, so ``d_model`` must be a multiple of it.
    Training uses ``num_threads`` threads
    (:func:`~transformer_course.experiments.threads.torch_threads`).
    """
    corpus = load_corpus()
    val_generator = torch.Generator().manual_seed(seed + 1)
    val = [get_batch(corpus.val, 64, block_size, val_generator) for _ in range(val_batches)]
    runs = []
    with torch_threads(num_threads):
        for d_model, n_layers in sizes:
            if d_model % head_dim:
                raise ValueError(f"d_model={d_model} is not a multiple of head_dim={head_dim}")
            torch.manual_seed(seed)
            model = GPT(corpus.tokenizer.vocab_size, block_size, d_model, d_model // head_dim, n_layers)
            optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
            generator = torch.Generator().manual_seed(seed)

            def next_batch(step: int, generator: torch.Generator = generator) -> tuple[Tensor]:
                return (get_batch(corpus.train, batch_size, block_size, generator),)

            losses = train_loop(
                model, optimizer, next_batch, lambda m, x: next_token_loss(m(x), x), steps,
                desc=f"d_model={d_model}, {n_layers} layer{'s' if n_layers > 1 else ''}",
            )
            with torch.no_grad(), fused_kernels(model):
                val_loss = sum(next_token_loss(model(x), x).item() for x in val) / len(val)
            runs.append(ScalingRun(d_model, n_layers, non_embedding_parameters(model), val_loss, losses))
    return runs
