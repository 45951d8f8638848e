"""Post-norm against pre-norm: how high a learning rate each one survives.

Chapter 4's experiment. Encoders that differ only in where their LayerNorms sit train on
the same batches from the same initial weights with Adam, at several peak learning rates,
with or without a linear warmup. The task needs attention: for every token of a random
sequence, predict how many times that token occurs in the sequence.
:func:`norm_sweep` returns every loss curve; :func:`chance_loss` is the loss of a model
that ignores the sequence, the line a run that learned nothing stays on. The runs train
on the modules' code as written unless told ``fused=True``; :func:`norm_step_times`
measures what that choice costs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from transformer_course.encoder import EncoderLayer, LayerNorm
from transformer_course.experiments.threads import torch_threads
from transformer_course.positional import PositionalEncoding
from transformer_course.training import say_fused, speed_switch, step_times

SEQ_LEN, VOCAB_SIZE = 12, 8
"""The task's sequence length and number of distinct tokens."""


def count_batch(
    batch: int, seq_len: int, vocab_size: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Random token ids and, at every position, how often its token occurs in its row.

    Returns:
        ``ids (batch, seq_len)`` and ``counts (batch, seq_len)``, LongTensors; every
        count lies in ``1 .. seq_len``.
    """
    ids = torch.randint(0, vocab_size, (batch, seq_len), generator=generator)
    counts = (ids[:, :, None] == ids[:, None, :]).sum(-1)
    return ids, counts


def chance_loss(
    seq_len: int = SEQ_LEN, vocab_size: int = VOCAB_SIZE, samples: int = 20000, seed: int = 0
) -> float:
    """Cross-entropy of the best prediction that ignores the sequence: the marginal
    distribution of the counts, estimated on ``samples`` random rows."""
    _, counts = count_batch(samples, seq_len, vocab_size, torch.Generator().manual_seed(seed))
    p = torch.bincount(counts.flatten(), minlength=seq_len + 1).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


class CountModel(nn.Module):
    """Token embeddings, sinusoidal positions, ``n_layers`` encoder layers and a linear
    read-out of the count at every position: ``(B, L)`` ids -> ``(B, L, L + 1)`` logits.

    ``layer``, ``norm`` and ``positions`` are the classes to build from (chapter 4 passes
    the student's ``EncoderLayer``, ``LayerNorm`` and ``PositionalEncoding``); a pre-norm
    stack ends with one more ``norm``.
    """

    def __init__(
        self,
        norm_first: bool,
        n_layers: int,
        seq_len: int,
        vocab_size: int,
        d_model: int = 32,
        n_heads: int = 4,
        layer: Callable[..., nn.Module] = EncoderLayer,
        norm: Callable[[int], nn.Module] = LayerNorm,
        positions: Callable[[int, int], nn.Module] = PositionalEncoding,
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = positions(d_model, seq_len)
        self.layers = nn.ModuleList(
            layer(d_model, n_heads, 2 * d_model, norm_first=norm_first) for _ in range(n_layers)
        )
        self.final_norm = norm(d_model) if norm_first else nn.Identity()
        self.head = nn.Linear(d_model, seq_len + 1)

    def forward(self, ids: Tensor) -> Tensor:
        """``ids (B, L)`` -> ``(B, L, seq_len + 1)`` logits over the counts ``0 .. seq_len``."""
        x = self.pos(self.embed(ids))
        for block in self.layers:
            x = block(x)
        return self.head(self.final_norm(x))


def count_loss(model: nn.Module, ids: Tensor, counts: Tensor) -> Tensor:
    """Cross-entropy of ``model``'s predicted counts: ``ids, counts (B, L)`` -> a scalar."""
    return F.cross_entropy(model(ids).flatten(0, 1), counts.flatten())


@dataclass
class NormRun:
    """One training run: its settings and its loss after every step."""

    norm_first: bool
    lr: float
    warmup_steps: int
    losses: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``"pre-norm"``, ``"post-norm"`` or ``"post-norm + warmup"``."""
        base = "pre-norm" if self.norm_first else "post-norm"
        return f"{base} + warmup" if self.warmup_steps else base

    def final_loss(self, fraction: float = 0.2) -> float:
        """Mean loss over the last ``fraction`` of the steps (NaN stays NaN)."""
        tail = max(1, int(len(self.losses) * fraction))
        return sum(self.losses[-tail:]) / tail


def train_norm_run(
    norm_first: bool,
    lr: float,
    steps: int,
    warmup_steps: int = 0,
    n_layers: int = 6,
    seq_len: int = SEQ_LEN,
    vocab_size: int = VOCAB_SIZE,
    batch: int = 64,
    seed: int = 0,
    layer: Callable[..., nn.Module] = EncoderLayer,
    norm: Callable[[int], nn.Module] = LayerNorm,
    positions: Callable[[int, int], nn.Module] = PositionalEncoding,
    threads: int | None = 1,
    fused: bool = False,
) -> NormRun:
    """Train one :class:`CountModel` with Adam at peak ``lr`` for ``steps`` steps.

    The learning rate rises linearly over the first ``warmup_steps`` steps (none when 0)
    and then stays constant. The initial weights and the batches depend on ``seed`` only,
    so runs that differ in ``norm_first``, ``lr`` or ``warmup_steps`` see the same data.

    Args:
        fused: train through PyTorch's fused attention and LayerNorm kernels
            (:func:`~transformer_course.training.speed_switch`) and print what ran
            fused. False: the modules' code as written (``layer``, ``norm``).
        threads: torch threads while it trains (None: unchanged).
    """
    run = NormRun(norm_first, lr, warmup_steps)
    with torch_threads(threads):
        torch.manual_seed(seed)
        model = CountModel(norm_first, n_layers, seq_len, vocab_size, layer=layer, norm=norm,
                           positions=positions)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(seed + 1)
        with speed_switch(model, fused) as report:
            for step in tqdm(range(steps), desc=f"{run.name}, lr {lr:g}", leave=False):
                for group in optimizer.param_groups:
                    group["lr"] = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr
                loss = count_loss(model, *count_batch(batch, seq_len, vocab_size, generator))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                run.losses.append(loss.item())
        say_fused(report)
    return run


def norm_step_times(
    n_layers: int = 6,
    seq_len: int = SEQ_LEN,
    vocab_size: int = VOCAB_SIZE,
    batch: int = 64,
    layer: Callable[..., nn.Module] = EncoderLayer,
    norm: Callable[[int], nn.Module] = LayerNorm,
    positions: Callable[[int, int], nn.Module] = PositionalEncoding,
    threads: int | None = 1,
    repeats: int = 3,
) -> dict[str, float]:
    """Milliseconds of one training step of a post-norm :class:`CountModel` as
    :func:`train_norm_run` builds it, on the modules' code as written and with
    ``fused=True`` (:func:`~transformer_course.training.step_times`, with ``threads``
    torch threads as the runs use).

    Returns:
        ``{"as written": ms, "fused": ms}``.
    """
    with torch_threads(threads):
        torch.manual_seed(0)
        model = CountModel(False, n_layers, seq_len, vocab_size, layer=layer, norm=norm,
                           positions=positions)
        ids_counts = count_batch(batch, seq_len, vocab_size, torch.Generator().manual_seed(0))
        return step_times(model, count_loss, ids_counts, repeats=repeats)


def norm_sweep(
    lrs: list[float],
    steps: int,
    warmup_steps: int,
    **kwargs,
) -> list[NormRun]:
    """Post-norm, pre-norm and post-norm with ``warmup_steps`` of warmup at every
    learning rate of ``lrs``; ``kwargs`` go to :func:`train_norm_run`."""
    runs = []
    for lr in lrs:
        runs.append(train_norm_run(False, lr, steps, **kwargs))
        runs.append(train_norm_run(True, lr, steps, **kwargs))
        runs.append(train_norm_run(False, lr, steps, warmup_steps=warmup_steps, **kwargs))
    return runs


def highest_learning_rate(
    runs: list[NormRun], name: str, chance: float, fraction: float = 0.5
) -> float | None:
    """The highest learning rate at which the runs called ``name`` learned, i.e. ended
    below ``fraction`` of the ``chance`` loss; None when none of them did."""
    learned = [r.lr for r in runs if r.name == name and r.final_loss() < fraction * chance]
    return max(learned, default=None)
