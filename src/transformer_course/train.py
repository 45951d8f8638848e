"""Chapter 7: the training loop, written from the chapter's own pieces.

One update (:func:`train_step`) sets the scheduled learning rate, computes the loss,
back-propagates, clips the global gradient norm and steps the optimizer.
:func:`train` repeats it on batches drawn from a token file, evaluates on held-out
tokens, shows a progress bar and saves checkpoints from which an interrupted run
resumes exactly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from transformer_course.batches import sample_batch
from transformer_course.checkpoint import load_checkpoint, save_checkpoint
from transformer_course.device import model_device, resolve
from transformer_course.losses import cross_entropy
from transformer_course.optim import AdamW, clip_grad_norm, cosine_schedule
from transformer_course.training import say_fused, speed_switch


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    lr: float,
    max_grad_norm: float | None = 1.0,
) -> float:
    """One optimizer update on the batch ``(x, y)``.

    In order: set ``lr`` in every parameter group; ``loss = cross_entropy(model(x), y)``;
    clear the old gradients; back-propagate; clip the global gradient norm to
    ``max_grad_norm`` (None: no clipping) with :func:`clip_grad_norm`; step.

    Args:
        model: maps ``(B, L)`` ids to ``(B, L, V)`` logits, in train mode.
        optimizer: over ``model``'s parameters.
        x, y: ``(B, L)`` LongTensors, inputs and next-token targets.
        lr: the learning rate of this update (from :func:`cosine_schedule`).
        max_grad_norm: the clipping limit.

    Returns:
        The loss of the batch before the update, a float.
    """
    ### BEGIN SOLUTION
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        clip_grad_norm(model.parameters(), max_grad_norm)
    optimizer.step()
    return loss.item()
    ### END SOLUTION


@torch.no_grad()
def estimate_loss(
    model: nn.Module, tokens: np.ndarray, batch_size: int, context_length: int, n_batches: int, seed: int = 0
) -> float:
    """Mean loss (nats per token) of ``model`` on ``n_batches`` batches of ``tokens``
    drawn with a generator of its own seeded ``seed``, so every evaluation sees the same
    windows and the training batches are not disturbed."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    device = model_device(model)
    total = 0.0
    for _ in range(n_batches):
        x, y = sample_batch(tokens, batch_size, context_length, device, generator)
        total += cross_entropy(model(x), y).item()
    model.train(was_training)
    return total / n_batches


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW that decays matrices and embeddings (parameters of two or more dimensions)
    but not biases and norm gains, with GPT-style ``betas=(0.9, 0.99)``."""
    params = list(model.parameters())
    return AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                 lr=lr, betas=(0.9, 0.99))


def train(
    model: nn.Module,
    train_tokens: np.ndarray,
    val_tokens: np.ndarray,
    steps: int,
    batch_size: int,
    context_length: int,
    max_lr: float = 2e-3,
    min_lr: float = 2e-4,
    warmup_steps: int = 100,
    weight_decay: float = 0.1,
    max_grad_norm: float = 1.0,
    eval_interval: int = 250,
    eval_batches: int = 20,
    seed: int = 0,
    device: torch.device | str | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_interval: int | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    fused: bool = False,
) -> dict[str, Any]:
    """Train a next-token model with :func:`make_optimizer`, :func:`cosine_schedule`
    and :func:`train_step` on batches of :func:`sample_batch`.

    The loop, exactly (the check compares every loss and the final weights):

    1. ``optimizer = make_optimizer(model, max_lr, weight_decay)`` and a generator
       ``torch.Generator().manual_seed(seed)``; with ``resume``,
       ``step = load_checkpoint(checkpoint, model, optimizer, generator)`` (the weights,
       the optimizer's state and the generator's state come back), else ``step = 0``.
    2. The call stops at ``last = steps``, or at ``min(steps, stop_after)``.
    3. While ``step < last``: when ``step % eval_interval == 0``, evaluate (before the
       update); draw ``x, y = sample_batch(train_tokens, batch_size, context_length,
       device, generator)``; ``lr = cosine_schedule(step, max_lr, min_lr, warmup_steps,
       steps)`` with the 0-based step of the whole run; append ``train_step(model,
       optimizer, x, y, lr, max_grad_norm)`` to ``"batch_loss"``; ``step += 1``; then,
       with a ``checkpoint`` file, ``save_checkpoint(checkpoint, model, optimizer, step,
       generator)`` when ``step`` is a multiple of ``checkpoint_interval`` or
       ``step == last`` (the last step this call makes).
    4. Evaluate once more at the end when the run is complete (``step == steps``).

    To evaluate is to append ``step`` to ``"step"`` and ``estimate_loss(model, tokens,
    batch_size, context_length, eval_batches)`` of ``train_tokens`` and of ``val_tokens``
    to ``"train_loss"`` and ``"val_loss"``. :func:`estimate_loss` puts the model back in
    train mode; so must anything else that evaluates. A tqdm bar (hidden when
    ``progress`` is False) counts the steps and shows the latest losses.

    Args:
        model: maps ``(B, L)`` ids to ``(B, L, V)`` logits.
        train_tokens, val_tokens: 1-D arrays of ids (``np.memmap`` files, typically).
        steps: updates in the whole run; the schedule decays to ``min_lr`` at the last.
        batch_size, context_length: ``B`` windows of ``L`` tokens per update.
        max_lr, min_lr, warmup_steps: the schedule (:func:`cosine_schedule`).
        weight_decay, max_grad_norm: AdamW's decoupled decay; the clipping limit.
        eval_interval, eval_batches: evaluate both splits every so many steps and at
            the end, each on ``eval_batches`` fixed batches (:func:`estimate_loss`).
        seed: seeds the generator that draws the training batches.
        device: where to train (None: the course's default device).
        checkpoint: a file for :func:`save_checkpoint`, written every
            ``checkpoint_interval`` steps (None: only at the end) and at the last step
            the call makes.
        resume: continue from ``checkpoint`` instead of starting afresh.
        stop_after: stop (as an interrupted run would) once this many steps are done.
        progress: show a tqdm bar with the latest losses.
        fused: train through PyTorch's fused attention and LayerNorm kernels
            (:func:`~transformer_course.training.speed_switch`) and print what ran
            fused. False: the model's code as written.

    Returns:
        ``history``: ``{"step", "train_loss", "val_loss"}`` lists at each evaluation,
        ``"batch_loss"`` (a list of floats) of every step made in this call,
        ``"first_step"`` (the step this call began at, an int) and ``"seconds"``
        (training time, evaluation excluded, a float).
    """
    device = resolve(device)
    model.to(device).train()
    with speed_switch(model, fused) as report:
        ### BEGIN SOLUTION
        optimizer = make_optimizer(model, max_lr, weight_decay)
        generator = torch.Generator().manual_seed(seed)
        step = load_checkpoint(checkpoint, model, optimizer, generator) if resume else 0
        history: dict[str, Any] = {"step": [], "train_loss": [], "val_loss": [], "batch_loss": [],
                                   "first_step": step, "seconds": 0.0}

        def evaluate() -> None:
            history["step"].append(step)
            for split, tokens in (("train_loss", train_tokens), ("val_loss", val_tokens)):
                history[split].append(estimate_loss(model, tokens, batch_size, context_length, eval_batches))

        last = steps if stop_after is None else min(steps, stop_after)
        bar = tqdm(total=last, initial=step, desc="training", disable=not progress, mininterval=1.0)
        while step < last:
            if step % eval_interval == 0:
                evaluate()
                bar.set_postfix(train=f"{history['train_loss'][-1]:.3f}",
                                val=f"{history['val_loss'][-1]:.3f}", refresh=False)
            start = time.perf_counter()
            x, y = sample_batch(train_tokens, batch_size, context_length, device, generator)
            lr = cosine_schedule(step, max_lr, min_lr, warmup_steps, steps)
            history["batch_loss"].append(train_step(model, optimizer, x, y, lr, max_grad_norm))
            history["seconds"] += time.perf_counter() - start
            step += 1
            bar.update()
            due = step == last or (checkpoint_interval and step % checkpoint_interval == 0)
            if checkpoint is not None and due:
                save_checkpoint(checkpoint, model, optimizer, step, generator)
        if step == steps:
            evaluate()
        bar.close()
        ### END SOLUTION
    say_fused(report)
    model.eval()
    return history
