"""Long-range dependencies: recall the token seen ``delay`` positions earlier.

The task isolates distance: the target at position ``t`` is the input token at
``t - delay``. A recurrent model must carry that token through ``delay`` updates of its
state; attention can look it up directly. :func:`recall_experiment` trains a tanh RNN,
an LSTM and a small Transformer of about the same size on it, for several delays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from transformer_course import attention, encoder, positional
from transformer_course.device import model_device, resolve, to_device
from transformer_course.experiments.blocks import blocks_for
from transformer_course.experiments.threads import torch_threads
from transformer_course.training import say_fused, speed_switch


def delay_recall_batch(
    batch: int, length: int, delay: int, vocab_size: int = 8, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """The "recall the token seen ``delay`` positions earlier" task.

    The input is a sequence of random tokens; the target at position ``t`` is the input
    token at ``t - delay``. Positions ``t < delay`` have nothing to recall and are
    marked -100 (ignored by ``F.cross_entropy``). To succeed, a model must keep the last
    ``delay`` tokens available at every step.

    Returns:
        ``x (batch, length)`` and ``y (batch, length)``, both LongTensors.
    """
    if not 0 < delay < length:
        raise ValueError(f"delay must be between 1 and length - 1 = {length - 1}, got {delay}")
    x = torch.randint(vocab_size, (batch, length), generator=generator)
    y = torch.full_like(x, -100)
    y[:, delay:] = x[:, :-delay]
    return x, y


class RecurrentTagger(nn.Module):
    """Embedding, one recurrent layer (``"rnn"``: tanh Elman RNN, or ``"lstm"``) and a
    linear read-out at every position: ``(B, L)`` token ids -> ``(B, L, vocab)`` logits."""

    def __init__(self, vocab_size: int, hidden: int, kind: str = "rnn"):
        super().__init__()
        layers = {"rnn": nn.RNN, "lstm": nn.LSTM}
        if kind not in layers:
            raise ValueError(f"kind must be 'rnn' or 'lstm', got {kind!r}")
        self.kind = kind
        self.embed = nn.Embedding(vocab_size, hidden)
        self.rnn = layers[kind](hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, idx: Tensor) -> Tensor:
        states, _ = self.rnn(self.embed(idx))
        return self.head(states)


class RecallTransformer(nn.Module):
    """A small causal Transformer built from the course's blocks: token embedding,
    learned positions (chapter 3), pre-norm encoder layers (chapter 4, with chapter 2's
    attention inside) under a causal mask (chapter 1), a final LayerNorm and a linear
    read-out. ``(B, L)`` token ids -> ``(B, L, vocab)`` logits.

    ``blocks`` gives ``LearnedPositionalEmbedding``, ``EncoderLayer``, ``LayerNorm`` and
    ``causal_mask`` (chapter 9 passes the student's; None: the course's reference)."""

    def __init__(self, vocab_size: int, max_len: int, d_model: int = 32, n_heads: int = 4,
                 n_layers: int = 2, d_ff: int | None = None, blocks: object | None = None):
        super().__init__()
        parts = _blocks(blocks)
        self.causal_mask = parts.causal_mask
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = parts.LearnedPositionalEmbedding(max_len, d_model)
        self.layers = nn.ModuleList(
            parts.EncoderLayer(d_model, n_heads, d_ff or 2 * d_model, norm_first=True)
            for _ in range(n_layers)
        )
        self.norm = parts.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, idx: Tensor) -> Tensor:
        x = self.pos(self.embed(idx))
        mask = self.causal_mask(idx.size(1)).to(idx.device)
        for layer in self.layers:
            x = layer(x, mask)
        return self.head(self.norm(x))


def _blocks(blocks: object | None) -> SimpleNamespace:
    return blocks_for("the recall experiment's Transformer", blocks, {
        "LearnedPositionalEmbedding": positional.LearnedPositionalEmbedding,
        "EncoderLayer": encoder.EncoderLayer, "LayerNorm": encoder.LayerNorm,
        "causal_mask": attention.causal_mask})


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def recurrent_hidden_for(n_params: int, kind: str, vocab_size: int = 8) -> int:
    """The hidden size that gives a :class:`RecurrentTagger` about ``n_params`` parameters."""
    def size(hidden: int) -> int:
        return count_parameters(RecurrentTagger(vocab_size, hidden, kind))

    hidden = 1
    while size(hidden + 1) <= n_params:
        hidden += 1
    return hidden if abs(size(hidden) - n_params) <= abs(size(hidden + 1) - n_params) else hidden + 1


def train_recall(
    model: nn.Module,
    delay: int,
    length: int,
    steps: int,
    batch: int = 32,
    vocab_size: int = 8,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = False,
    device: torch.device | str | None = None,
    fused: bool = False,
) -> list[float]:
    """Train ``model`` on :func:`delay_recall_batch` with Adam; returns the loss per step.
    Trains on ``device`` (None: :func:`transformer_course.device.default_device`), then
    moves the model back to its own device. ``fused``: attention and LayerNorm through
    PyTorch's kernels (:func:`~transformer_course.multi_head.fused_kernels`), printing
    what ran fused; False: the model's code as written."""
    generator = torch.Generator().manual_seed(seed)
    home, device = model_device(model), resolve(device)
    params = list(model.to(device).parameters())
    optimizer = torch.optim.Adam(params, lr=lr, fused=True)
    model.train()
    losses = []
    with speed_switch(model, fused) as report:
        for _ in tqdm(range(steps), desc=f"delay {delay}", disable=not progress, leave=False):
            x, y = to_device(delay_recall_batch(batch, length, delay, vocab_size, generator), device)
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(loss.item())
    say_fused(report)
    model.to(home)
    return losses


@torch.no_grad()
def recall_accuracy(model: nn.Module, delay: int, length: int, batch: int = 256,
                    vocab_size: int = 8, seed: int = 1234, fused: bool = False) -> float:
    """Fraction of positions ``t >= delay`` whose recalled token is right, on fresh data
    (``fused`` as in :func:`train_recall`)."""
    generator = torch.Generator().manual_seed(seed)
    x, y = to_device(delay_recall_batch(batch, length, delay, vocab_size, generator), model_device(model))
    model.eval()
    with speed_switch(model, fused):
        predictions = model(x).argmax(-1)
    scored = y != -100
    return (predictions[scored] == y[scored]).float().mean().item()


@dataclass
class RecallResult:
    """Accuracy of each model at each delay, and the models' sizes."""

    delays: list[int]
    accuracy: dict[str, list[float]]
    n_params: dict[str, int]
    chance: float
    models: dict[str, nn.Module]  # the trained models of the last (longest) delay


def recall_experiment(
    delays: list[int],
    steps: int,
    d_model: int = 32,
    n_heads: int = 4,
    n_layers: int = 1,
    vocab_size: int = 8,
    scored: int = 16,
    batch: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    num_threads: int | None = 1,
    blocks: object | None = None,
    fused: bool = False,
) -> RecallResult:
    """Train a tanh RNN, an LSTM and a Transformer of about the same parameter count on
    the delay-recall task for each delay, with the same data, steps and optimiser.

    The Transformer is a :class:`RecallTransformer` built from ``blocks`` (chapter 9
    passes the student's; None: the course's reference). ``fused`` as in
    :func:`train_recall`, for every model.

    Each sequence is ``delay + scored`` tokens long, so every sequence has ``scored``
    positions to recall, whatever the delay. The recurrent hidden sizes are chosen to
    match the Transformer's parameter count (:func:`recurrent_hidden_for`). Training
    uses ``num_threads`` threads
    (:func:`~transformer_course.experiments.threads.torch_threads`).
    """
    max_len = max(delays) + scored

    def transformer() -> nn.Module:
        return RecallTransformer(vocab_size, max_len, d_model, n_heads, n_layers, blocks=parts)

    parts = _blocks(blocks)

    budget = count_parameters(transformer())
    hidden = {kind: recurrent_hidden_for(budget, kind, vocab_size) for kind in ("rnn", "lstm")}
    makers: dict[str, Callable[[], nn.Module]] = {
        f"tanh RNN (H={hidden['rnn']})": lambda: RecurrentTagger(vocab_size, hidden["rnn"], "rnn"),
        f"LSTM (H={hidden['lstm']})": lambda: RecurrentTagger(vocab_size, hidden["lstm"], "lstm"),
        f"Transformer ({n_layers} layer{'s' if n_layers > 1 else ''}, d={d_model})": transformer,
    }
    accuracy: dict[str, list[float]] = {name: [] for name in makers}
    n_params = {name: count_parameters(make()) for name, make in makers.items()}
    models: dict[str, nn.Module] = {}
    runs = [(delay, name) for delay in delays for name in makers]
    with torch_threads(num_threads):
        for delay, name in tqdm(runs, desc="recall"):
            torch.manual_seed(seed)
            models[name] = makers[name]()
            length = delay + scored
            train_recall(models[name], delay, length, steps, batch, vocab_size, lr, seed, fused=fused)
            accuracy[name].append(recall_accuracy(models[name], delay, length, vocab_size=vocab_size,
                                                  fused=fused))
    return RecallResult(list(delays), accuracy, n_params, 1.0 / vocab_size, models)
