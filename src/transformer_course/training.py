"""Training helpers shared by the chapters: learning-rate schedules with warmup, a
small training loop with a progress bar, and the sequence-to-sequence loss.

The loop is deliberately general: it takes a function that returns the next batch and
a function that turns ``(model, *batch)`` into a scalar loss, so the same loop trains
the encoder-decoder of chapter 5 and a language model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from transformer_course.device import model_device, resolve, to_device
from transformer_course.multi_head import fused_kernels


def noam_lr(step: int, d_model: int, warmup_steps: int) -> float:
    """The schedule of "Attention Is All You Need" (section 5.3):
    ``d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``, steps counted from 1: a
    linear rise for ``warmup_steps``, then decay as ``1/sqrt(step)``."""
    step = max(step, 1)
    return d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


def warmup_cosine(warmup_steps: int, total_steps: int, min_factor: float = 0.0) -> Callable[[int], float]:
    """A multiplier of the base learning rate for ``torch.optim.lr_scheduler.LambdaLR``:
    a linear rise from ~0 to 1 over ``warmup_steps``, then a cosine decay to
    ``min_factor`` at ``total_steps``.

    Warmup matters because Adam's first updates, made with poor estimates of the
    gradient's scale, can push a freshly initialised (especially post-norm)
    Transformer into a bad region at the full learning rate.
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps}, {total_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def train_loop(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    get_batch: Callable[[int], tuple],
    loss_fn: Callable[..., Tensor],
    steps: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    clip_grad: float | None = 1.0,
    desc: str = "training",
    progress: bool = True,
    device: torch.device | str | None = None,
    fused: bool = False,
) -> list[float]:
    """Train ``model`` for ``steps`` optimizer steps and return the loss of each step.

    Args:
        model: switched to train mode for the loop and to eval mode after it.
        optimizer: updates the model's parameters.
        get_batch: ``step -> batch`` (a tuple), e.g. a fresh random batch per step.
        loss_fn: ``(model, *batch) -> scalar loss``.
        steps: number of updates.
        scheduler: stepped after every update (e.g. ``LambdaLR(opt, warmup_cosine(...))``).
        clip_grad: clip the global gradient norm to this value (None: no clipping).
        desc: label of the progress bar.
        progress: show a tqdm progress bar.
        device: where to train (None: :func:`transformer_course.device.default_device`);
            the model and every batch go there, and the model comes back to its own
            device at the end.
        fused: train through PyTorch's fused attention and LayerNorm kernels
            (:func:`~transformer_course.multi_head.fused_kernels`; the rest of the model
            runs as written) and print what ran fused. False: the model's code as written.

    Returns:
        The training loss at every step.
    """
    home, device = model_device(model), resolve(device)
    model.to(device).train()
    params = list(model.parameters())
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=1.0)
    with speed_switch(model, fused) as report:
        for step in bar:
            loss = loss_fn(model, *to_device(get_batch(step), device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad is not None:
                nn.utils.clip_grad_norm_(params, clip_grad)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.item())
            if step % 20 == 0 or step == steps - 1:
                bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    say_fused(report)
    model.to(home).eval()
    return losses


def speed_switch(model: nn.Module, fused: bool):
    """:func:`~transformer_course.multi_head.fused_kernels` when ``fused``, else nothing."""
    return fused_kernels(model) if fused else nullcontext()


def say_fused(report) -> None:
    """Print what ran fused (training output says so whenever ``fused=True``)."""
    if report is not None:
        tqdm.write(str(report))


def step_times(
    model: nn.Module, loss_fn: Callable[..., Tensor], batch: tuple, repeats: int = 5
) -> dict[str, float]:
    """Milliseconds of one training step's forward and backward pass on ``batch``, with
    the model's code as written and with ``fused=True`` (best of ``repeats`` each,
    after one warm-up step). The parameters are not updated; gradients are cleared.

    Args:
        model: the model, on the device of ``batch``.
        loss_fn: ``(model, *batch) -> scalar loss``.
        batch: one batch, as ``get_batch`` gives it to :func:`train_loop`.
        repeats: timed steps per setting.

    Returns:
        ``{"as written": ms, "fused": ms}``.
    """
    was_training = model.training
    model.train()

    def step() -> None:
        loss_fn(model, *batch).backward()
        model.zero_grad(set_to_none=True)

    times = {}
    for name, fused in (("as written", False), ("fused", True)):
        with speed_switch(model, fused):
            step()  # warm-up (and, fused, the check that each kernel gives the same result)
            best = math.inf
            for _ in range(repeats):
                start = time.perf_counter()
                step()
                best = min(best, time.perf_counter() - start)
        times[name] = 1000 * best
    model.train(was_training)
    return times


def other_setting_seconds(step_ms: dict[str, float], fused: bool, seconds: float) -> float:
    """About how long the ``seconds`` a run trained with ``fused`` would take with the
    other setting: scaled by the ratio of the per-step times that :func:`step_times`
    measured (``{"as written": ms, "fused": ms}``)."""
    slower = step_ms["as written"] / step_ms["fused"]  # as written over fused, per step
    return seconds * slower if fused else seconds / slower


def seq2seq_loss(
    model: nn.Module, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None, pad_id: int = 0
) -> Tensor:
    """Teacher forcing: feed ``tgt[:, :-1]`` and predict ``tgt[:, 1:]`` all at once.

    Args:
        model: ``model(src, tgt_in, src_mask) -> logits (B, L_tgt - 1, vocab)``.
        src: ``(B, L_src)`` source ids.
        tgt: ``(B, L_tgt)`` target ids starting with ``<bos>``.
        src_mask: ``(B, 1, L_src)`` source padding mask.
        pad_id: target padding, ignored by the loss.

    Returns:
        Mean cross-entropy over the real target tokens.
    """
    logits = model(src, tgt[:, :-1], src_mask)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1),
                           ignore_index=pad_id)


def smooth(values: list[float], window: int = 20) -> list[float]:
    """Running mean over the last ``window`` values, for readable loss curves."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out



# --------------------------------------------------------------------------- language models (06)


def window_loss(model: nn.Module, windows: Tensor) -> Tensor:
    """Mean next-token loss on ``windows (B, L + 1)``: the model reads the first ``L``
    tokens and every one of its ``L`` positions predicts the token that follows.

    Same value as ``next_token_loss(model(w), w)`` on ``w`` of ``L + 1`` tokens, except
    that the model sees only ``L`` of them. Training this way gives every position up to
    ``max_len - 1`` a target, so generation can use the full context window.
    """
    logits = model(windows[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())


def estimate_lm_loss(
    model: nn.Module, data: Tensor, batch_size: int, block_size: int, n_batches: int, seed: int = 0
) -> float:
    """Mean next-token loss (nats per token) of ``model`` on ``n_batches`` random windows
    of ``block_size + 1`` tokens of ``data`` (:func:`window_loss`), drawn with a fixed
    seed so that evaluations are comparable. The windows go to the model's device."""
    from transformer_course.corpus import get_batch

    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for _ in range(n_batches):
            windows = get_batch(data, batch_size, block_size + 1, generator).to(model_device(model))
            total += window_loss(model, windows).item()
    model.train(was_training)
    return total / n_batches


def train_language_model(
    model: nn.Module,
    train_data: Tensor,
    val_data: Tensor,
    steps: int,
    batch_size: int,
    block_size: int,
    max_lr: float = 2e-3,
    min_lr: float = 2e-4,
    warmup_steps: int = 100,
    weight_decay: float = 0.1,
    eval_interval: int = 250,
    eval_batches: int = 20,
    seed: int = 0,
    progress: bool = True,
    device: torch.device | str | None = None,
    max_seconds: float | None = None,
    fused: bool = False,
) -> dict[str, list]:
    """Train a next-token model with AdamW (its fused update), :func:`warmup_cosine` and
    gradient clipping, evaluating train and validation loss along the way.

    Args:
        model: maps ``(B, L)`` token ids to ``(B, L, V)`` logits.
        train_data, val_data: 1-D LongTensors of token ids.
        steps: optimisation steps.
        batch_size, block_size: each step draws ``batch_size`` windows of
            ``block_size + 1`` tokens (:func:`transformer_course.corpus.get_batch`); the
            model reads ``block_size`` of them (at most its ``max_len``) and predicts the
            next token at every position (:func:`window_loss`).
        max_lr, min_lr, warmup_steps: linear warmup to ``max_lr``, cosine decay to
            ``min_lr`` at the last step.
        weight_decay: AdamW decay on matrices and embeddings (parameters with two or
            more dimensions), not on biases and norms.
        eval_interval: evaluate every so many steps and at the end, on ``eval_batches``
            fixed batches of each split (:func:`estimate_lm_loss`).
        seed: seeds the training batches.
        progress: show a tqdm progress bar with the latest losses.
        device: where to train (None: :func:`transformer_course.device.default_device`);
            the model comes back to its own device at the end.
        max_seconds: a wall-clock budget for training (evaluation not counted). The
            schedule then advances by steps or by the fraction of the budget spent,
            whichever is further along, and training stops when either runs out, so a
            slow machine still ends on the decayed learning rate.
        fused: train and evaluate through PyTorch's fused attention and LayerNorm
            kernels (as in :func:`train_loop`) and print what ran fused.

    Returns:
        ``{"step", "train_loss", "val_loss", "seconds"}`` at each evaluation (``seconds``
        counts training time only, not evaluation) and ``"batch_loss"`` of every step.
    """
    from transformer_course.corpus import get_batch

    home, device = model_device(model), resolve(device)
    model.to(device)
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=max_lr, betas=(0.9, 0.99), fused=True,  # one kernel for all parameters
    )
    schedule = warmup_cosine(warmup_steps, steps, min_factor=min_lr / max_lr)
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, list] = {"step": [], "train_loss": [], "val_loss": [], "seconds": [],
                                "batch_loss": []}
    elapsed = 0.0

    def evaluate(step: int) -> None:
        for split, data in (("train_loss", train_data), ("val_loss", val_data)):
            history[split].append(estimate_lm_loss(model, data, batch_size, block_size, eval_batches))
        history["step"].append(step)
        history["seconds"].append(elapsed)

    def position(step: int) -> float:
        """Where the schedule is: the step, or the share of the time budget spent."""
        return step if max_seconds is None else max(step, steps * elapsed / max_seconds)

    model.train()
    bar = tqdm(total=steps, desc="training", disable=not progress, mininterval=1.0)
    step = 0
    with speed_switch(model, fused) as report:
        while position(step) < steps:
            if step % eval_interval == 0:
                evaluate(step)
                bar.set_postfix(train=f"{history['train_loss'][-1]:.3f}",
                                val=f"{history['val_loss'][-1]:.3f}", refresh=False)
            start = time.perf_counter()
            lr = max_lr * schedule(int(position(step)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = window_loss(model, get_batch(train_data, batch_size, block_size + 1, generator).to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            elapsed += time.perf_counter() - start
            history["batch_loss"].append(loss.item())
            step += 1
            bar.update()
        evaluate(step)
    bar.close()
    say_fused(report)
    model.to(home).eval()
    return history
