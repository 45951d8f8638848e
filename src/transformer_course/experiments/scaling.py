"""Scalability: small scaling curves of chapter 6's GPT and of an LSTM language model.

Kaplan et al. (2020) found that a Transformer language model's loss falls as a power
law in its number of parameters (without the embeddings) when data and compute do not
hold it back, and that LSTMs of the same size do worse, the more so the larger they are.
:func:`scaling_experiment` trains several sizes of either architecture on one budget and
reports what :func:`transformer_course.why.fit_power_law` fits;
:func:`loss_by_position` measures how much a trained model gains from its context, and
:func:`position_ablation` trains one GPT with and one without its position embedding.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from transformer_course.corpus import Corpus, get_batch, load_corpus
from transformer_course.experiments.threads import torch_threads
from transformer_course.gpt import GPT, next_token_loss
from transformer_course.training import speed_switch, train_loop

ARCHITECTURES = ("transformer", "lstm")


class LSTMLanguageModel(nn.Module):
    """A character-level LSTM language model: token embedding, ``n_layers`` of
    ``nn.LSTM`` of width ``d_model``, and an output head tied to the embedding, as the
    chapter 6 ``GPT`` ties its own. It needs no position embedding: the recurrence
    reads the tokens in order."""

    def __init__(self, vocab_size: int, d_model: int, n_layers: int):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.lstm = nn.LSTM(d_model, d_model, n_layers, batch_first=True)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight

    def forward(self, idx: Tensor) -> Tensor:
        """``idx (B, L)`` token ids -> next-token logits ``(B, L, vocab_size)``."""
        states, _ = self.lstm(self.tok_emb(idx))
        return self.lm_head(states)


def non_embedding_parameters(model: nn.Module) -> int:
    """Parameters outside the token and position embeddings of a chapter 6 ``GPT`` (or
    of an :class:`LSTMLanguageModel`), the size that scaling laws count (Kaplan et al.,
    2020). The tied output head is the token embedding, so it is not counted either."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not name.startswith(("tok_emb.", "pos_emb.")))


@dataclass
class ScalingRun:
    """One trained model and how it did."""

    architecture: str
    d_model: int
    n_layers: int
    n_params: int
    val_loss: float
    train_losses: list[float]
    seconds: float
    model: nn.Module | None = field(default=None, repr=False)


def _validation_batches(corpus: Corpus, block_size: int, n: int, seed: int) -> list[Tensor]:
    """``n`` fixed batches of 64 validation windows, the same for every model."""
    generator = torch.Generator().manual_seed(seed + 1)
    return [get_batch(corpus.val, 64, block_size, generator) for _ in range(n)]


def _train_and_measure(
    model: nn.Module, corpus: Corpus, val: list[Tensor], steps: int, batch_size: int,
    block_size: int, lr: float, seed: int, desc: str,
    loss: Callable[[Tensor, Tensor], Tensor] = next_token_loss,
    fused: bool = False,
) -> tuple[list[float], float, float]:
    """Train ``model`` on the same batches in the same order as every other model of the
    experiment; return its training losses, validation loss (nats per character) and
    wall-clock training seconds. ``fused``: through PyTorch's attention and LayerNorm
    kernels (:func:`~transformer_course.multi_head.fused_kernels`), printing what ran
    fused; False: the model's code as written."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, fused=True)
    generator = torch.Generator().manual_seed(seed)

    def next_batch(step: int) -> tuple[Tensor]:
        return (get_batch(corpus.train, batch_size, block_size, generator),)

    start = time.perf_counter()
    losses = train_loop(model, optimizer, next_batch, lambda m, x: loss(m(x), x), steps,
                        desc=desc, device="cpu", fused=fused)
    seconds = time.perf_counter() - start
    with torch.no_grad(), speed_switch(model, fused):  # train_loop said what ran fused
        val_loss = sum(loss(model(x), x).item() for x in val) / len(val)
    return losses, val_loss, seconds


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
    architecture: str = "transformer",
    gpt: Callable[..., nn.Module] = GPT,
    loss: Callable[[Tensor, Tensor], Tensor] = next_token_loss,
    fused: bool = False,
) -> list[ScalingRun]:
    """Train one model per ``(d_model, n_layers)`` in ``sizes`` on the bundled
    character-level corpus, all with the same budget (``steps`` batches of
    ``batch_size x block_size`` tokens, the same batches in the same order), and measure
    each one's validation loss (nats per character).

    ``architecture`` is ``"transformer"`` (chapter 6's ``GPT``, the class ``gpt``; heads
    have ``head_dim`` channels each, so ``d_model`` must be a multiple of it) or
    ``"lstm"`` (:class:`LSTMLanguageModel`). Both train on ``loss``, chapter 6's
    ``next_token_loss`` (chapter 9 passes the student's ``GPT`` and ``next_token_loss``;
    the defaults are the course's reference). Training runs on the CPU with
    ``num_threads`` threads (:func:`~transformer_course.experiments.threads.torch_threads`),
    so that the seconds of the two architectures compare. ``fused``: through PyTorch's
    attention and LayerNorm kernels (printing what ran fused); False: the code as written.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    corpus = load_corpus()
    val = _validation_batches(corpus, block_size, val_batches, seed)
    runs = []
    with torch_threads(num_threads):
        for d_model, n_layers in sizes:
            torch.manual_seed(seed)
            if architecture == "lstm":
                model: nn.Module = LSTMLanguageModel(corpus.tokenizer.vocab_size, d_model, n_layers)
            elif d_model % head_dim:
                raise ValueError(f"d_model={d_model} is not a multiple of head_dim={head_dim}")
            else:
                model = gpt(corpus.tokenizer.vocab_size, block_size, d_model, d_model // head_dim, n_layers)
            desc = f"{architecture} d_model={d_model}, {n_layers} layer{'s' if n_layers > 1 else ''}"
            losses, val_loss, seconds = _train_and_measure(
                model, corpus, val, steps, batch_size, block_size, lr, seed, desc, loss, fused)
            runs.append(ScalingRun(architecture, d_model, n_layers, non_embedding_parameters(model),
                                   val_loss, losses, seconds, model))
    return runs


def loss_by_position(model: nn.Module, block_size: int = 64, n_windows: int = 256, seed: int = 0,
                     fused: bool = False) -> Tensor:
    """Validation loss at each position of a window: how much a model gains from the
    context before a token (Kaplan et al., 2020, section 3.2.1, compare Transformers and
    LSTMs this way).

    Args:
        model: a language model, ``(B, L) ids -> (B, L, vocab) logits``.
        block_size: the window length ``L`` (at most what the model was trained on).
        n_windows: validation windows averaged over.
        seed: which windows.
        fused: through PyTorch's attention and LayerNorm kernels
            (:func:`~transformer_course.multi_head.fused_kernels`); False: as written.

    Returns:
        ``(L - 1,)``: entry ``t`` is the mean cross-entropy (nats) of predicting the token
        at position ``t + 1`` from the ``t + 1`` tokens before it.
    """
    corpus = load_corpus()
    x = get_batch(corpus.val, n_windows, block_size, torch.Generator().manual_seed(seed + 2))
    with torch.no_grad(), speed_switch(model, fused):
        logits = model(x)[:, :-1]
        losses = nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
    return losses.mean(dim=0)


@dataclass
class PositionAblation:
    """Validation losses of the same GPT trained with and without position embeddings."""

    val_loss: dict[str, float]
    train_losses: dict[str, list[float]]
    models: dict[str, GPT]


def position_ablation(
    steps: int,
    d_model: int = 64,
    n_layers: int = 2,
    batch_size: int = 32,
    block_size: int = 64,
    lr: float = 3e-3,
    head_dim: int = 8,
    val_batches: int = 4,
    seed: int = 0,
    num_threads: int | None = 1,
    gpt: Callable[..., nn.Module] = GPT,
    loss: Callable[[Tensor, Tensor], Tensor] = next_token_loss,
) -> PositionAblation:
    """Train chapter 6's ``GPT`` twice on the same budget and the same batches: once as
    it is (learned positions) and once with its position embedding set to zero and
    frozen, so that nothing but the causal mask tells a position where it stands
    ("NoPE"). Both start from the same initial weights. ``gpt`` and ``loss`` are the
    ``GPT`` class and ``next_token_loss`` to use (chapter 6 passes the student's).

    Returns:
        losses and models under the keys ``"learned positions"`` and
        ``"no positions (NoPE)"``.
    """
    corpus = load_corpus()
    val = _validation_batches(corpus, block_size, val_batches, seed)
    result = PositionAblation({}, {}, {})
    with torch_threads(num_threads):
        for name in ("learned positions", "no positions (NoPE)"):
            torch.manual_seed(seed)
            model = gpt(corpus.tokenizer.vocab_size, block_size, d_model, d_model // head_dim, n_layers)
            if name.startswith("no positions"):
                with torch.no_grad():
                    model.pos_emb.weight.zero_()
                model.pos_emb.weight.requires_grad_(False)
            losses, val_loss, _ = _train_and_measure(
                model, corpus, val, steps, batch_size, block_size, lr, seed, name, loss)
            result.val_loss[name], result.train_losses[name], result.models[name] = val_loss, losses, model
    return result
