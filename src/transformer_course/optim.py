"""Chapter 7: the optimizer and what surrounds every update: AdamW, the learning-rate
schedule (linear warmup, then cosine decay to a floor) and gradient clipping by the
global norm.

AdamW (Loshchilov and Hutter, "Decoupled Weight Decay Regularization", 2019) keeps two
running averages per parameter, of the gradient ``m`` and of its square ``v``, and
moves each parameter by ``lr * m_hat / (sqrt(v_hat) + eps)``, where the hats undo the
bias of averages that start at zero. Its weight decay shrinks the parameter itself,
``p <- p - lr * weight_decay * p``, apart from the gradient: added to the gradient
instead (L2 regularisation), the decay would be divided by ``sqrt(v_hat)`` like the rest
and weaken exactly where gradients are large.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor


class AdamW(torch.optim.Optimizer):
    """AdamW with the same update, defaults and state as ``torch.optim.AdamW``.

    Args:
        params: parameters (tensors) or parameter groups (dicts with ``"params"`` and
            any of the options below), as every ``torch.optim`` optimizer takes them.
        lr: learning rate; a schedule changes ``group["lr"]`` between steps.
        betas: decay rates ``(beta1, beta2)`` of the averages of the gradient and of
            its square.
        eps: added to ``sqrt(v_hat)`` so the division never blows up.
        weight_decay: decoupled decay: every step multiplies the parameter by
            ``1 - lr * weight_decay`` before the Adam update.

    State per parameter (``self.state[p]``): ``"step"`` (updates so far, an int),
    ``"exp_avg"`` and ``"exp_avg_sq"`` (tensors shaped like ``p``). Parameters whose
    ``grad`` is None are skipped.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ):
        ### BEGIN SOLUTION
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid AdamW options: lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        ### END SOLUTION

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One update of every parameter that has a gradient.

        Args:
            closure: optional; re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or None.
        """
        ### BEGIN SOLUTION
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2) = group["lr"], group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                p.mul_(1 - lr * group["weight_decay"])  # decoupled: before, and apart from, Adam
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                # bias correction: the averages start at 0 and are too small early on
                denom = (v.sqrt() / math.sqrt(1 - beta2**t)).add_(group["eps"])
                p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))
        return loss
        ### END SOLUTION


def cosine_schedule(step: int, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """The learning rate at ``step`` (counted from 0): linear warmup, cosine decay, floor.

    - ``step < warmup_steps``: ``max_lr * (step + 1) / warmup_steps``, so the first update
      already moves and step ``warmup_steps - 1`` reaches ``max_lr``;
    - ``warmup_steps <= step <= total_steps``: ``min_lr + (max_lr - min_lr) * (1 + cos(pi * p)) / 2``
      with ``p = (step - warmup_steps) / (total_steps - warmup_steps)``, from ``max_lr``
      down to ``min_lr``;
    - after ``total_steps``: ``min_lr``.

    Args:
        step: the update about to be made, from 0.
        max_lr, min_lr: the peak and the floor.
        warmup_steps: length of the warmup, ``0 <= warmup_steps < total_steps``.
        total_steps: the step at which the decay reaches ``min_lr``.

    Returns:
        The learning rate, a float.
    """
    ### BEGIN SOLUTION
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr + (max_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    ### END SOLUTION


def clip_grad_norm(parameters: Iterable[Tensor], max_norm: float) -> Tensor:
    """Scale all gradients together so that their global L2 norm is at most ``max_norm``.

    The global norm is that of all gradients joined into one vector,
    ``sqrt(sum over parameters of ||grad||^2)``; when it exceeds ``max_norm`` every
    gradient is multiplied by the same ``max_norm / (norm + 1e-6)`` (the small constant,
    as in ``torch.nn.utils.clip_grad_norm_``, guards a zero norm), so the direction of
    the update is kept. Gradients already within the limit are left as they are.

    Args:
        parameters: tensors whose ``.grad`` is clipped in place; those without a
            gradient are skipped.
        max_norm: the largest global norm allowed.

    Returns:
        The global norm before clipping, a scalar tensor.
    """
    ### BEGIN SOLUTION
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norm = torch.stack([g.pow(2).sum() for g in grads]).sum().sqrt()
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.to(g.dtype))
    return norm
    ### END SOLUTION
