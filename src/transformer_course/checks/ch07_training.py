"""Chapter 7 (train it yourself): visible cases and the catalogue of known mistakes of
the loss, the optimizer, the schedule, clipping, batches, checkpoints, one update and
the training loop.

Behaviours the chapter states, and the case that exercises each:

cross_entropy
    log-sum-exp with each row's max         "rows offset by +800 and -800"
    no log of a softmax (underflow)         "the target 120 below the top"
    ignore_index left out of the mean       "padding ...", "ignore_index=0 ..."
AdamW
    bias correction, decoupled decay        every case (float64, against torch.optim.AdamW)
    each group's own options                "two groups ..."
    no gradient: untouched                  "a parameter without a gradient ..."
    group["lr"] read every step             "the learning rate changes every step"
cosine_schedule
    warmup (step + 1) / warmup, cosine to   every case; "steps past total_steps"
    the floor, then the floor
clip_grad_norm
    one global norm, 1e-6 in the scale      "float64 ...", "one big, one tiny gradient"
    under the limit: untouched              "norm below max_norm"
sample_batch
    one randint call; y is x shifted by 1   every case; "only one window fits"
save_checkpoint, load_checkpoint
    model, optimizer, step and RNG state    every case: the resumed losses are those of
                                            the run that never stopped
train_step
    lr set, grads cleared, clipped, step    every case
train (on stand-ins of the pieces it calls, so that only the loop is graded)
    batches from the seeded generator,      every case
    lr of the 0-based step of the run,
    max_grad_norm passed on
    evaluation before the update, at        "12 steps, evaluations at steps 0, 4, 8 and 12",
    multiples of eval_interval and at the   "6 steps ... an evaluation before every step"
    end; the model back in train mode
    stop_after, a checkpoint at the last    "10 steps with stop_after=5 ..."
    step, resume with step and generator
    a checkpoint every checkpoint_interval  "... interrupted by an error in the 8th update"
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import tempfile
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_course import batches as ref_batches
from transformer_course import checkpoint as ref_checkpoint
from transformer_course import losses as ref_losses
from transformer_course import optim as ref_optim
from transformer_course import train as ref_train
from transformer_course.checks.exercise import Case, Exercise, Mistake
from transformer_course.checks.kit import mutant, randn
from transformer_course.checks.registry import register
from transformer_course.checks.running import OutputError
from transformer_course.training import train_language_model

CHAPTER = "07_training"

# --------------------------------------------------------------------------- cross_entropy


def _ce_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    padded = torch.randint(7, (3, 5), generator=g)
    padded[0, 3:], padded[2, 1:] = -100, -100
    pad0 = torch.randint(4, (4, 6), generator=g)
    pad0[:, ::3] = 0
    offset = randn(g, 6, 5) * 3 + torch.tensor([800.0, -800.0, 0.0, 800.0, -800.0, 0.0])[:, None]
    wrong = randn(g, 4, 6)
    targets = torch.randint(6, (4,), generator=g)
    wrong[torch.arange(4), targets] -= 120.0
    return [
        Case("logits (6, 5)", {"logits": randn(g, 6, 5) * 2, "targets": torch.randint(5, (6,), generator=g)}),
        Case("logits (2, 4, 9), targets (2, 4)",
             {"logits": randn(g, 2, 4, 9), "targets": torch.randint(9, (2, 4), generator=g)}),
        Case("float64 (3, 5, 7), padding (ignore_index=-100) at the ends of rows 0 and 2",
             {"logits": randn(g, 3, 5, 7, dtype=torch.float64) * 2, "targets": padded}),
        Case("ignore_index=0: the pad id 0 is masked out (every third target)",
             {"logits": randn(g, 4, 6, 4, dtype=torch.float64), "targets": pad0, "ignore_index": 0}),
        Case("large logits (float32): rows offset by +800 and -800",
             {"logits": offset, "targets": torch.randint(5, (6,), generator=g)}),
        Case("confident and wrong (float32): the target's logit 120 below the top",
             {"logits": wrong, "targets": targets}),
    ]


def _run_ce(f: Any, a: dict[str, Any]) -> Tensor:
    if "ignore_index" in a:
        return f(a["logits"], a["targets"], ignore_index=a["ignore_index"])
    return f(a["logits"], a["targets"])


def _ce(logits, targets, ignore_index=-100, *, shift="row", log_softmax=False, mean_over="kept",
        fixed_ignore=False, reduce="mean"):
    """Cross-entropy with one step switchable."""
    if fixed_ignore:
        ignore_index = -100
    z, t = logits.reshape(-1, logits.size(-1)), targets.reshape(-1)
    keep = t != ignore_index
    safe = t.clamp(min=0) * keep
    if log_softmax:
        p = (z - z.max(dim=-1, keepdim=True).values).exp()
        loss = -(p / p.sum(dim=-1, keepdim=True)).log().gather(-1, safe[:, None]).squeeze(-1)
    else:
        if shift == "row":
            top = z.max(dim=-1, keepdim=True).values
        elif shift == "global":
            top = z.max().expand(len(z), 1)
        else:
            top = torch.zeros(len(z), 1, dtype=z.dtype)
        lse = (z - top).exp().sum(dim=-1).log() + top.squeeze(-1)
        loss = lse - z.gather(-1, safe[:, None]).squeeze(-1)
    loss = torch.where(keep, loss, torch.zeros_like(loss))
    if reduce == "sum":
        return loss.sum()
    return loss.sum() / (keep.sum() if mean_over == "kept" else len(t))


CROSS_ENTROPY = Exercise(
    name="cross_entropy",
    chapter=CHAPTER,
    reference=ref_losses.cross_entropy,
    make_cases=_ce_cases,
    run=_run_ce,
    outputs=("loss",),
    forbidden={"F.cross_entropy": F.cross_entropy, "F.log_softmax": F.log_softmax,
               "F.nll_loss": F.nll_loss, "torch.logsumexp": torch.logsumexp,
               "Tensor.logsumexp": Tensor.logsumexp, "torch.log_softmax": torch.log_softmax,
               "Tensor.log_softmax": Tensor.log_softmax},
    mistakes=[
        Mistake("no max subtracted",
                "log(sum(exp(z))) overflows: exp(800) is inf in float32. Subtract each row's "
                "maximum m first: logsumexp(z) = m + log(sum(exp(z - m))).", mutant(_ce, shift="none")),
        Mistake("one max for the whole tensor",
                "You subtract one maximum for the whole tensor; a row far below it underflows "
                "to exp(...) = 0 and log(0) = -inf. Take the maximum of each row "
                "(max(dim=-1, keepdim=True)).", mutant(_ce, shift="global")),
        Mistake("log of the softmax",
                "You take the log of softmax probabilities: a target far below the top logit "
                "has a probability that rounds to 0, and log(0) = -inf. Compute "
                "logsumexp(z) - z[target] instead, which never forms the probability.",
                mutant(_ce, log_softmax=True)),
        Mistake("ignored positions averaged in",
                "Positions whose target is ignore_index still count in the mean (as zeros): "
                "divide by the number of kept targets, not by all of them.",
                mutant(_ce, mean_over="all")),
        Mistake("ignore_index not used",
                "You ignore -100 whatever ignore_index says: mask the targets equal to the "
                "ignore_index argument.", mutant(_ce, fixed_ignore=True)),
        Mistake("sum instead of mean",
                "The loss is summed; take the mean over the kept targets.", mutant(_ce, reduce="sum")),
    ],
)

# --------------------------------------------------------------------------- AdamW


def _adamw_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def tensors(*shapes, dtype=torch.float64):
        return [randn(g, *s, dtype=dtype) for s in shapes]

    def case(name, shapes, groups, options, steps, dtype=torch.float64, lrs=None, frozen=()):
        args = {"params": tensors(*shapes, dtype=dtype), "weights": tensors(*shapes, dtype=dtype),
                "groups": groups, "options": options, "steps": steps, "frozen": list(frozen)}
        if lrs is not None:
            args["lrs"] = lrs
        return Case(name, args)

    return [
        case("defaults, 5 steps, one (4, 3) tensor (float64)", [(4, 3)], [{"params": [0]}], {}, 5),
        case("lr=0.1, betas=(0.8, 0.95), weight_decay=0.5, 8 steps", [(3, 5), (5,)],
             [{"params": [0, 1]}], {"lr": 0.1, "betas": [0.8, 0.95], "weight_decay": 0.5}, 8),
        case("two groups: decay 0.2 and lr 0.05 on the matrix, no decay on the bias; eps=1e-3",
             [(4, 4), (4,)], [{"params": [0], "weight_decay": 0.2, "lr": 0.05},
                              {"params": [1], "weight_decay": 0.0}],
             {"lr": 0.02, "eps": 1e-3, "weight_decay": 0.1}, 6),
        case("a parameter without a gradient is left alone", [(3, 3), (2, 2)], [{"params": [0, 1]}],
             {"lr": 0.05, "weight_decay": 0.3}, 4, frozen=[1]),
        case("the learning rate changes every step (group['lr'] set by a schedule)", [(5, 2)],
             [{"params": [0]}], {"lr": 0.0, "weight_decay": 0.1}, 5, lrs=[0.01, 0.05, 0.1, 0.03, 0.2]),
        case("float32, 10 steps", [(6, 3), (3,)], [{"params": [0, 1]}],
             {"lr": 0.01, "weight_decay": 0.05}, 10, dtype=torch.float32),
    ]


def _run_adamw(cls: Any, a: dict[str, Any]) -> Tensor:
    if isinstance(cls, type) and not issubclass(cls, torch.optim.Optimizer):
        raise OutputError("AdamW should be a subclass of torch.optim.Optimizer")
    if isinstance(cls, type) and issubclass(cls, (torch.optim.Adam, torch.optim.AdamW)):
        raise OutputError("AdamW may not derive from torch.optim.Adam or AdamW: write its step yourself")
    params = [p.clone().requires_grad_() for p in a["params"]]
    groups = [{**g, "params": [params[i] for i in g["params"]]} for g in a["groups"]]
    options = {k: tuple(v) if k == "betas" else v for k, v in a["options"].items()}
    optimizer = cls(groups, **options)
    with torch.enable_grad():
        for step in range(a["steps"]):
            if "lrs" in a:
                for group in optimizer.param_groups:
                    group["lr"] = a["lrs"][step]
            optimizer.zero_grad()
            pairs = [(p, w) for i, (p, w) in enumerate(zip(params, a["weights"], strict=True))
                     if i not in a["frozen"]]
            loss = sum(((p * w).sin() + 0.5 * p**2 * w.abs()).sum() for p, w in pairs)
            loss.backward()
            optimizer.step()
    return torch.cat([p.detach().flatten() for p in params])


class _AdamWMutant(torch.optim.Optimizer):
    """AdamW with one step done wrong (a flag)."""

    bias_correction = True
    coupled = False  # L2: the decay added to the gradient
    decay_after = False
    decay_with_lr = True
    eps_inside = False
    sqrt_bc2 = True
    group_options = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            opts = group if self.group_options else {**group, **{k: v for k, v in self.defaults.items()
                                                                 if k != "lr"}}
            lr, (b1, b2), eps, wd = group["lr"], opts["betas"], opts["eps"], opts["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                st["step"] += 1
                t, grad = st["step"], p.grad + wd * p if self.coupled else p.grad
                decay = 1 - (lr * wd if self.decay_with_lr else wd)
                if not self.coupled and not self.decay_after:
                    p.mul_(decay)
                st["m"].mul_(b1).add_(grad, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
                bc1, bc2 = (1 - b1**t, 1 - b2**t) if self.bias_correction else (1.0, 1.0)
                v_hat = st["v"] / bc2
                if self.eps_inside:
                    denom = (v_hat + eps).sqrt()
                else:
                    denom = (v_hat.sqrt() if self.sqrt_bc2 else st["v"].sqrt() / bc2) + eps
                p.sub_(lr * (st["m"] / bc1) / denom)
                if not self.coupled and self.decay_after:
                    p.mul_(decay)


ADAMW = Exercise(
    name="AdamW",
    chapter=CHAPTER,
    reference=ref_optim.AdamW,
    make_cases=_adamw_cases,
    run=_run_adamw,
    outputs=("params",),
    mistakes=[
        Mistake("no bias correction",
                "The averages start at 0, so early on they are too small: divide m by "
                "1 - beta1**t and v by 1 - beta2**t (t counts this parameter's updates from 1).",
                mutant(_AdamWMutant, bias_correction=False)),
        Mistake("L2 instead of decoupled decay",
                "You add weight_decay * p to the gradient (L2, Adam's coupled decay); AdamW "
                "decays the parameter itself, p <- p * (1 - lr * weight_decay), apart from "
                "the gradient.", mutant(_AdamWMutant, coupled=True)),
        Mistake("decay after the update",
                "The weight decay is applied after the Adam update; torch.optim.AdamW (and "
                "the exercise) decays the parameter first, then adds the update.",
                mutant(_AdamWMutant, decay_after=True)),
        Mistake("decay without the learning rate",
                "The decay multiplies by 1 - weight_decay; it is 1 - lr * weight_decay.",
                mutant(_AdamWMutant, decay_with_lr=False)),
        Mistake("eps inside the square root",
                "eps goes after the square root: m_hat / (sqrt(v_hat) + eps).",
                mutant(_AdamWMutant, eps_inside=True)),
        Mistake("second bias correction not square-rooted",
                "v_hat = v / (1 - beta2**t) and the update divides by sqrt(v_hat): the "
                "correction of v enters under the square root.", mutant(_AdamWMutant, sqrt_bc2=False)),
        Mistake("defaults instead of the group's options",
                "You read betas, eps or weight_decay from self.defaults; each parameter group "
                "has its own (group['weight_decay'], ...).", mutant(_AdamWMutant, group_options=False)),
    ],
)

# --------------------------------------------------------------------------- cosine_schedule


def _schedule_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    jitter = float(torch.rand((), generator=g)) * 0.5
    return [
        Case("max_lr=1, min_lr=0.1, warmup 5, total 50, steps 0..60",
             {"steps": list(range(61)), "max_lr": 1.0, "min_lr": 0.1, "warmup_steps": 5,
              "total_steps": 50}),
        Case("no warmup (warmup_steps=0), total 20",
             {"steps": list(range(25)), "max_lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 0,
              "total_steps": 20}),
        Case(f"6e-4 down to {6e-5 * (1 + jitter):.3g}, warmup 100, total 1000, every 7th step up to 1200",
             {"steps": list(range(0, 1201, 7)), "max_lr": 6e-4, "min_lr": 6e-5 * (1 + jitter),
              "warmup_steps": 100, "total_steps": 1000}),
        Case("steps past total_steps stay at the floor (warmup 1, total 4)",
             {"steps": [0, 1, 2, 3, 4, 5, 9, 100], "max_lr": 2.0, "min_lr": 0.5, "warmup_steps": 1,
              "total_steps": 4}),
    ]


def _run_schedule(f: Any, a: dict[str, Any]) -> Tensor:
    values = [f(s, a["max_lr"], a["min_lr"], a["warmup_steps"], a["total_steps"]) for s in a["steps"]]
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


def _schedule(step, max_lr, min_lr, warmup_steps, total_steps, *, warmup_shift=1, floor=True,
              span="decay", shape="cosine", clamp=True):
    if step < warmup_steps:
        return max_lr * (step + warmup_shift) / warmup_steps
    length = total_steps - warmup_steps if span == "decay" else total_steps
    progress = (step - warmup_steps) / length
    if clamp:
        progress = min(1.0, progress)
    low = min_lr if floor else 0.0
    fall = 0.5 * (1 + math.cos(math.pi * progress)) if shape == "cosine" else max(0.0, 1 - progress)
    return low + (max_lr - low) * fall


COSINE_SCHEDULE = Exercise(
    name="cosine_schedule",
    chapter=CHAPTER,
    reference=ref_optim.cosine_schedule,
    make_cases=_schedule_cases,
    run=_run_schedule,
    outputs=("lr",),
    mistakes=[
        Mistake("warmup off by one",
                "The warmup gives max_lr * step / warmup_steps: the first update has lr 0 and "
                "max_lr comes one step late. Use (step + 1) / warmup_steps.",
                mutant(_schedule, warmup_shift=0)),
        Mistake("cosine to 0",
                "The cosine decays to 0; it decays to the floor min_lr: "
                "min_lr + (max_lr - min_lr) * (1 + cos(pi * progress)) / 2.", mutant(_schedule, floor=False)),
        Mistake("rises again after total_steps",
                "After total_steps the learning rate stays at min_lr; your cosine goes on and "
                "climbs back. Clamp the progress at 1.", mutant(_schedule, clamp=False)),
        Mistake("decay over total_steps",
                "The decay spans total_steps - warmup_steps steps (from the end of the warmup "
                "to total_steps), not total_steps.", mutant(_schedule, span="total")),
        Mistake("linear decay",
                "The decay is linear; it follows half a cosine period, "
                "(1 + cos(pi * progress)) / 2.", mutant(_schedule, shape="linear")),
    ],
)

# --------------------------------------------------------------------------- clip_grad_norm


def _clip_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name, shapes, max_norm, scale=1.0, dtype=torch.float32, no_grad=(), scales=None):
        grads = [randn(g, *s, dtype=dtype) * (scales[i] if scales else scale) for i, s in enumerate(shapes)]
        return Case(name, {"grads": grads, "max_norm": max_norm, "no_grad": list(no_grad)})

    return [
        case("3 tensors, norm about 4 above max_norm=1", [(4, 3), (3,), (2, 2)], 1.0),
        case("float64, norm about 10 clipped to 2.5", [(5, 5), (5,)], 2.5, scale=2.0, dtype=torch.float64),
        case("norm below max_norm=100: gradients untouched", [(3, 3), (3,)], 100.0),
        case("one parameter without a gradient is skipped", [(4,), (2, 3), (3,)], 0.5, no_grad=[1]),
        case("float64, one big and one tiny gradient, max_norm=0.25", [(6,), (6,)], 0.25,
             dtype=torch.float64, scales=[3.0, 0.01]),
        case("float64, small gradients: norm about 0.002 clipped to 0.0005", [(3, 4)], 5e-4,
             scale=6e-4, dtype=torch.float64),
    ]


def _run_clip(f: Any, a: dict[str, Any]) -> tuple[Tensor, Tensor]:
    params = [torch.zeros_like(gr, requires_grad=True) for gr in a["grads"]]
    for i, (p, gr) in enumerate(zip(params, a["grads"], strict=True)):
        p.grad = None if i in a["no_grad"] else gr.clone()
    norm = f(params, a["max_norm"])
    if not isinstance(norm, Tensor):
        norm = torch.tensor(float(norm), dtype=a["grads"][0].dtype)
    grads = torch.cat([p.grad.flatten() for p in params if p.grad is not None])
    return norm.reshape(()), grads


def _clip(parameters, max_norm, *, per_parameter=False, eps=1e-6, clamp=True, after=False, kind="l2"):
    grads = [p.grad for p in parameters if p.grad is not None]
    norms = torch.stack([gr.norm() for gr in grads])
    norm = {"l2": norms.pow(2).sum().sqrt(), "sum": norms.sum(), "max": norms.max()}[kind]
    for gr, own in zip(grads, norms, strict=True):
        scale = max_norm / ((own if per_parameter else norm) + eps)
        gr.mul_(scale.clamp(max=1.0) if clamp else scale)
    if after:
        return torch.stack([gr.norm() for gr in grads]).pow(2).sum().sqrt()
    return norm


CLIP_GRAD_NORM = Exercise(
    name="clip_grad_norm",
    chapter=CHAPTER,
    reference=ref_optim.clip_grad_norm,
    make_cases=_clip_cases,
    run=_run_clip,
    outputs=("norm", "grads"),
    forbidden={"nn.utils.clip_grad_norm_ (it runs torch._foreach_norm)": torch._foreach_norm},
    mistakes=[
        Mistake("per-parameter clipping",
                "Each gradient is clipped by its own norm, which changes the direction of the "
                "update; clip them all by one global norm, sqrt(sum of every squared entry).",
                mutant(_clip, per_parameter=True)),
        Mistake("no 1e-6 in the scale",
                "The scale is max_norm / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_ "
                "computes it (the constant guards a zero norm).", mutant(_clip, eps=0.0)),
        Mistake("small gradients scaled up",
                "Gradients whose norm is already below max_norm are scaled up; only scale "
                "down (clamp the factor at 1).", mutant(_clip, clamp=False)),
        Mistake("norm after clipping returned",
                "Return the global norm before clipping (what you measured, useful to log).",
                mutant(_clip, after=True)),
        Mistake("sum of the norms",
                "The global norm is not the sum of the per-parameter norms: it is the square "
                "root of the sum of their squares.", mutant(_clip, kind="sum")),
    ],
)

# --------------------------------------------------------------------------- sample_batch


def _batch_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [
        Case("tokens 0..99 in a uint16 file, B=4, L=8", {"tokens": torch.arange(100), "batch_size": 4,
                                                         "context_length": 8, "seed": seed}),
        Case("random ids up to 60000, B=3, L=16", {"tokens": torch.randint(60000, (500,), generator=g),
                                                   "batch_size": 3, "context_length": 16, "seed": seed + 1}),
        Case("L = len(tokens) - 1: only one window fits", {"tokens": torch.randint(50, (13,), generator=g),
                                                           "batch_size": 5, "context_length": 12,
                                                           "seed": seed + 2}),
        Case("B=1, L=1", {"tokens": torch.randint(9, (40,), generator=g), "batch_size": 1,
                          "context_length": 1, "seed": seed + 3}),
    ]


def _run_batch(f: Any, a: dict[str, Any]) -> tuple[Tensor, ...]:
    # The token file goes to a folder of its own in the working directory, where the
    # grader lets a submission write, and is removed afterwards.
    with tempfile.TemporaryDirectory(dir=os.getcwd()) as folder:
        path = os.path.join(folder, "tokens.bin")
        a["tokens"].numpy().astype(np.uint16).tofile(path)
        tokens = np.memmap(path, dtype=np.uint16, mode="r")
        generator = torch.Generator().manual_seed(a["seed"])
        first = f(tokens, a["batch_size"], a["context_length"], "cpu", generator)
        second = f(tokens, a["batch_size"], a["context_length"], "cpu", generator)
        out = [t.clone() if isinstance(t, Tensor) else t for pair in (first, second) for t in pair]
        del tokens
    return tuple(out)


def _batch(tokens, batch_size, context_length, device="cpu", generator=None, *, high_shift=0,
           shift=1, dtype=torch.long):
    starts = torch.randint(len(tokens) - context_length + high_shift, (batch_size,), generator=generator)
    data = torch.from_numpy(np.asarray(tokens, dtype=np.int64))
    x = torch.stack([data[s : s + context_length] for s in starts.tolist()])
    y = torch.stack([data[s + shift : s + shift + context_length] for s in starts.tolist()])
    return x.to(device, dtype), y.to(device, dtype)


SAMPLE_BATCH = Exercise(
    name="sample_batch",
    chapter=CHAPTER,
    reference=ref_batches.sample_batch,
    make_cases=_batch_cases,
    run=_run_batch,
    outputs=("x", "y", "next_x", "next_y"),
    mistakes=[
        Mistake("targets not shifted",
                "y equals x: the model would learn to copy its input. The target of position "
                "t is the token after it, y = tokens[s + 1 : s + L + 1].", mutant(_batch, shift=0)),
        Mistake("window one too far",
                "You draw starts from len(tokens) - L + 1 values: the last start leaves no "
                "token for the last target. Draw torch.randint(len(tokens) - L, ...).",
                mutant(_batch, high_shift=1)),
        Mistake("int32 ids",
                "The ids are int32; embeddings and cross-entropy targets take int64 "
                "(torch.long): convert the uint16 window with .astype(np.int64) or .long().",
                mutant(_batch, dtype=torch.int32)),
    ],
)

# --------------------------------------------------------------------------- checkpoints
#
# The runs below use a tiny bigram model, torch.optim.AdamW and batches drawn in the
# case, so that only the student's save or load is graded.

_V, _D, _B, _L = 11, 6, 3, 5


class _Bigram(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(_V, _D)
        self.out = nn.Linear(_D, _V)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.tanh(self.emb(x)))


def _loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The mean next-token cross-entropy of ``model`` on ``x, y (B, L)``."""
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


def _ckpt_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    cases = []
    for before, after in [(3, 4), (1, 5), (6, 3)]:
        model = _Bigram()
        state = {k: randn(g, *v.shape, dtype=torch.float64) * 0.5 for k, v in model.state_dict().items()}
        cases.append(Case(f"{before} steps, checkpoint, {after} steps after resuming",
                          {"state": state, "data": torch.randint(_V, (200,), generator=g), "before": before,
                           "after": after, "seed": seed * 10 + before}))
    return cases


def _fresh(state: dict[str, Tensor], bump: float = 0.0) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = _Bigram().double()
    model.load_state_dict({k: v + bump for k, v in state.items()})
    return model, torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)


def _train(model, optimizer, generator, data, start: int, n: int) -> list[float]:
    """``n`` updates from step ``start``; the learning rate depends on the step."""
    losses = []
    with torch.enable_grad():
        for step in range(start, start + n):
            s = torch.randint(len(data) - _L, (_B,), generator=generator)
            x = torch.stack([data[i : i + _L] for i in s.tolist()])
            y = torch.stack([data[i + 1 : i + 1 + _L] for i in s.tolist()])
            for group in optimizer.param_groups:
                group["lr"] = 0.05 / (1 + step)
            loss = _loss(model, x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def _resume(checkpoint: dict, a: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Restore what a checkpoint holds into a model, optimizer and generator that start
    elsewhere, train on and return the losses and the step resumed from."""
    model, optimizer = _fresh(a["state"], bump=0.3)
    generator = torch.Generator().manual_seed(12345)
    if "model" not in checkpoint:
        raise OutputError("the checkpoint has no 'model' entry: save a dict with the keys "
                          "'model', 'optimizer', 'step' and 'rng'")
    model.load_state_dict(checkpoint["model"])
    if "optimizer" in checkpoint:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if "rng" in checkpoint:
        generator.set_state(checkpoint["rng"])
    step = int(checkpoint.get("step", 0))
    losses = _train(model, optimizer, generator, a["data"], step, a["after"])
    return torch.tensor(losses, dtype=torch.float64), torch.tensor(step)


def _run_save(f: Any, a: dict[str, Any]) -> tuple[Tensor, Tensor]:
    model, optimizer = _fresh(a["state"])
    generator = torch.Generator().manual_seed(a["seed"])
    _train(model, optimizer, generator, a["data"], 0, a["before"])
    with tempfile.TemporaryDirectory(dir=os.getcwd()) as folder:
        path = os.path.join(folder, "checkpoint.pt")
        f(path, model, optimizer, a["before"], generator)
        checkpoint = torch.load(path, map_location="cpu")
    if not isinstance(checkpoint, dict):
        raise OutputError(f"the checkpoint should be a dict, got {type(checkpoint).__name__}")
    return _resume(checkpoint, a)


def _run_load(f: Any, a: dict[str, Any]) -> tuple[Tensor, Tensor]:
    model, optimizer = _fresh(a["state"])
    generator = torch.Generator().manual_seed(a["seed"])
    _train(model, optimizer, generator, a["data"], 0, a["before"])
    saved = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": a["before"],
             "rng": generator.get_state()}
    resumed, opt2 = _fresh(a["state"], bump=0.3)
    gen2 = torch.Generator().manual_seed(12345)
    with tempfile.TemporaryDirectory(dir=os.getcwd()) as folder:
        path = os.path.join(folder, "checkpoint.pt")
        torch.save(saved, path)
        step = f(path, resumed, opt2, gen2)
    losses = _train(resumed, opt2, gen2, a["data"], int(step), a["after"])
    return torch.tensor(losses, dtype=torch.float64), torch.tensor(int(step))


def _save(path, model, optimizer, step, generator, *, skip=(), step_shift=0):
    full = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + step_shift,
            "rng": generator.get_state()}
    torch.save({k: v for k, v in full.items() if k not in skip}, path)


def _load(path, model, optimizer, generator, *, skip=(), step_shift=0):
    checkpoint = torch.load(path)
    model.load_state_dict(checkpoint["model"])
    if "optimizer" not in skip:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if "rng" not in skip:
        generator.set_state(checkpoint["rng"])
    return checkpoint["step"] + step_shift


SAVE_CHECKPOINT = Exercise(
    name="save_checkpoint",
    chapter=CHAPTER,
    reference=ref_checkpoint.save_checkpoint,
    make_cases=_ckpt_cases,
    run=_run_save,
    outputs=("losses_after_resuming", "step"),
    atol64=1e-12,
    mistakes=[
        Mistake("optimizer state not saved",
                "The optimizer's state is missing: AdamW restarts with empty averages and the "
                "resumed run takes other steps. Save optimizer.state_dict() as 'optimizer'.",
                mutant(_save, skip=("optimizer",))),
        Mistake("generator state not saved",
                "The generator's state is missing: the resumed run draws other batches. Save "
                "generator.get_state() as 'rng'.", mutant(_save, skip=("rng",))),
        Mistake("step off by one",
                "Save the number of updates already made, the step the schedule continues from.",
                mutant(_save, step_shift=1)),
    ],
)

LOAD_CHECKPOINT = Exercise(
    name="load_checkpoint",
    chapter=CHAPTER,
    reference=ref_checkpoint.load_checkpoint,
    make_cases=_ckpt_cases,
    run=_run_load,
    outputs=("losses_after_resuming", "step"),
    atol64=1e-12,
    mistakes=[
        Mistake("optimizer state not restored",
                "The optimizer's state is not restored (optimizer.load_state_dict(...)): AdamW "
                "restarts with empty averages.", mutant(_load, skip=("optimizer",))),
        Mistake("generator state not restored",
                "The generator's state is not restored (generator.set_state(...)): the "
                "resumed run draws other batches than the run it continues.",
                mutant(_load, skip=("rng",))),
        Mistake("step off by one",
                "Return the saved step as it is: the next update is number 'step'.",
                mutant(_load, step_shift=1)),
    ],
)

# --------------------------------------------------------------------------- train_step


def _step_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    cases = []
    for name, lrs, clip in [("3 updates, clipped at 0.1 (clipping active)", [0.05, 0.1, 0.02], 0.1),
                            ("max_grad_norm=None: no clipping", [0.03, 0.03, 0.03], None),
                            ("4 updates, lr from a schedule, clipped at 1.0",
                             [0.01, 0.04, 0.03, 0.005], 1.0)]:
        model = _Bigram()
        state = {k: randn(g, *v.shape, dtype=torch.float64) for k, v in model.state_dict().items()}
        data = torch.randint(_V, (_B, _L + 1), generator=g)
        cases.append(Case(name, {"state": state, "x": data[:, :-1], "y": data[:, 1:], "lrs": lrs,
                                 "max_grad_norm": clip}))
    return cases


def _run_step(f: Any, a: dict[str, Any]) -> tuple[Tensor, Tensor]:
    model, _ = _fresh(a["state"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.0, weight_decay=0.1)  # lr set by each step
    with torch.enable_grad():
        losses = [float(f(model, optimizer, a["x"], a["y"], lr, a["max_grad_norm"])) for lr in a["lrs"]]
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    return torch.tensor(losses, dtype=torch.float64), params


def _step(model, optimizer, x, y, lr, max_grad_norm=1.0, *, set_lr=True, zero="before", clip_after=False):
    if set_lr:
        for group in optimizer.param_groups:
            group["lr"] = lr
    loss = _loss(model, x, y)
    if zero == "before":
        optimizer.zero_grad()
    loss.backward()
    if zero == "after":
        optimizer.zero_grad()
    if max_grad_norm is not None and not clip_after:
        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if max_grad_norm is not None and clip_after:
        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    return loss.item()


TRAIN_STEP = Exercise(
    name="train_step",
    chapter=CHAPTER,
    reference=ref_train.train_step,
    make_cases=_step_cases,
    run=_run_step,
    outputs=("losses", "params"),
    mistakes=[
        Mistake("gradients never cleared",
                "The gradients of earlier steps pile up (backward() adds to .grad): call "
                "optimizer.zero_grad() before loss.backward().", mutant(_step, zero="never")),
        Mistake("gradients cleared after backward",
                "zero_grad() comes after backward(), so the optimizer steps with empty "
                "gradients: clear them before back-propagating.", mutant(_step, zero="after")),
        Mistake("clipped after the step",
                "Clipping after optimizer.step() changes nothing this step: clip between "
                "backward() and step().", mutant(_step, clip_after=True)),
        Mistake("learning rate not set",
                "The lr argument is never used: set group['lr'] = lr in every parameter "
                "group before the step.", mutant(_step, set_lr=False)),
    ],
)

# --------------------------------------------------------------------------- train
#
# The loop runs on stand-ins for the pieces it calls (sample_batch, cosine_schedule,
# train_step, make_optimizer, estimate_loss, save_checkpoint, load_checkpoint), defined
# here and put, while it runs, in place of those names in the namespace it reads them
# from. So only the loop is graded: a mistake in one of the pieces shows in that piece's
# own check, and the check needs neither the student's pieces nor the course's (a stub
# in the student edition). The stand-ins differ from the exercises on purpose (they are
# not answers to them) but, like them, draw every batch from the generator they are
# given and depend on every argument the loop passes.


class _Interrupted(RuntimeError):
    """Raised by the stand-in model to stop a run the way a crash would."""


class _TinyLM(_Bigram):
    """The bigram model with its hidden state halved in train mode (a deterministic
    stand-in for dropout, so that training in eval mode shows). ``crash_at``: the
    training forward pass (counted from 1) that raises :class:`_Interrupted`."""

    def __init__(self, crash_at: int | None = None):
        super().__init__()
        self.crash_at, self.passes = crash_at, 0

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.emb(x))
        if self.training:
            self.passes += 1
            if self.passes == self.crash_at:
                raise _Interrupted(f"the run stops at training forward pass {self.passes}")
            h = 0.5 * h
        return self.out(h)


def _batch_stand_in(tokens, batch_size, context_length, device=None, generator=None):
    """Windows whose starts come from ``torch.rand`` on ``generator`` (the global RNG
    when it is None)."""
    starts = (torch.rand(batch_size, generator=generator, dtype=torch.float64)
              * (len(tokens) - context_length)).long()
    data = torch.from_numpy(np.asarray(tokens, dtype=np.int64))
    windows = data[starts[:, None] + torch.arange(context_length + 1)]
    return windows[:, :-1].to(device), windows[:, 1:].to(device)


def _schedule_stand_in(step, max_lr, min_lr, warmup_steps, total_steps):
    """Warmup to ``max_lr`` over ``warmup_steps + 1`` steps, then an exponential decay
    that reaches ``min_lr`` at ``total_steps``."""
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    return max_lr * (min_lr / max_lr) ** min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))


def _step_stand_in(model, optimizer, x, y, lr, max_grad_norm=1.0):
    """One update that clips every gradient entry to ``[-max_grad_norm, max_grad_norm]``."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad()
    loss = _loss(model, x, y)
    loss.backward()
    if max_grad_norm is not None:
        for p in model.parameters():
            p.grad.clamp_(-max_grad_norm, max_grad_norm)
    optimizer.step()
    return loss.item()


def _optimizer_stand_in(model, lr, weight_decay):
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def _eval_stand_in(model, tokens, batch_size, context_length, n_batches, seed=0):
    """Mean loss on ``n_batches`` batches from a generator seeded ``seed``; the model's
    mode comes back as it was."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        losses = [_loss(model, x, y).item()
                  for x, y in (_batch_stand_in(tokens, batch_size, context_length, "cpu", generator)
                               for _ in range(n_batches))]
    model.train(was_training)
    return sum(losses) / n_batches


def _save_stand_in(path, model, optimizer, step, generator):
    torch.save([int(step), model.state_dict(), optimizer.state_dict(), generator.get_state()], path)


def _load_stand_in(path, model, optimizer, generator):
    step, weights, moments, rng = torch.load(path)
    model.load_state_dict(weights)
    optimizer.load_state_dict(moments)
    generator.set_state(rng)
    return step


_STAND_INS = {"sample_batch": _batch_stand_in, "cosine_schedule": _schedule_stand_in,
              "train_step": _step_stand_in, "make_optimizer": _optimizer_stand_in,
              "estimate_loss": _eval_stand_in, "save_checkpoint": _save_stand_in,
              "load_checkpoint": _load_stand_in}


@contextlib.contextmanager
def _stand_ins(f: Any) -> Iterator[None]:
    """Put the stand-ins in place of the pieces in the namespace ``f`` reads its names
    from (a notebook's, a submission's), for the helpers and classes of that namespace
    that ``f`` calls as well; the names come back as they were on exit. A catalogued
    mistake (a ``functools.partial``) calls the stand-ins itself."""
    if isinstance(f, functools.partial):
        yield
        return
    if not isinstance(f, types.FunctionType):
        raise OutputError(f"train should be a function (def train(...)), got {type(f).__name__}")
    namespace = f.__globals__
    saved = {name: namespace[name] for name in _STAND_INS if name in namespace}
    namespace.update(_STAND_INS)
    try:
        yield
    finally:
        for name in _STAND_INS:
            if name in saved:
                namespace[name] = saved[name]
            else:
                namespace.pop(name, None)


def _train_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name: str, runs: list[dict[str, Any]], crash_at: int | None = None, **options: Any) -> Case:
        state = {k: randn(g, *v.shape, dtype=torch.float64) for k, v in _TinyLM().state_dict().items()}
        return Case(name, {"state": state, "train": torch.randint(_V, (300,), generator=g),
                           "val": torch.randint(_V, (120,), generator=g), "runs": runs,
                           "crash_at": crash_at, "options": {"seed": seed, **options}})

    return [
        case("12 steps, evaluations at steps 0, 4, 8 and 12 (the end), warmup 3, max_grad_norm=0.05",
             [{}], steps=12, batch_size=_B, context_length=_L, max_lr=0.05, min_lr=0.005,
             warmup_steps=3, weight_decay=0.3, max_grad_norm=0.05, eval_interval=4, eval_batches=2),
        case("10 steps with stop_after=5 and a checkpoint every 3 steps; a fresh model resumes "
             "from the checkpoint; evaluations every 5 steps",
             [{"stop_after": 5}, {"resume": True}], steps=10, batch_size=_B, context_length=_L,
             max_lr=0.08, min_lr=0.01, warmup_steps=2, eval_interval=5, eval_batches=1,
             checkpoint_interval=3),
        case("11 steps, checkpoint every 3 steps; the run is interrupted by an error in the 8th "
             "update and resumed from the checkpoint of step 6",
             [{}, {"resume": True}], crash_at=8, steps=11, batch_size=2, context_length=4,
             max_lr=0.1, min_lr=0.02, warmup_steps=2, eval_interval=4, eval_batches=2,
             checkpoint_interval=3),
        case("6 steps, no warmup, an evaluation before every step", [{}], steps=6, batch_size=4,
             context_length=3, max_lr=0.03, min_lr=0.003, warmup_steps=0, eval_interval=1,
             eval_batches=1),
    ]


_HISTORY = ("batch_loss", "step", "train_loss", "val_loss")


def _run_train(f: Any, a: dict[str, Any]) -> tuple[Tensor, ...]:
    """Each of the case's calls on a model of its own that starts from the case's
    weights (a resumed call gets its weights from the checkpoint): the histories of the
    calls that return, joined, the step each began at and the final weights."""
    dtype = a["state"]["emb.weight"].dtype
    joined: dict[str, list] = {key: [] for key in _HISTORY}
    first_steps = []
    with tempfile.TemporaryDirectory(dir=os.getcwd()) as folder:
        splits = []
        for split in ("train", "val"):
            path = os.path.join(folder, f"{split}.bin")
            a[split].numpy().astype(np.uint16).tofile(path)
            splits.append(np.memmap(path, dtype=np.uint16, mode="r"))
        options = {**a["options"], "checkpoint": os.path.join(folder, "checkpoint.pt"), "device": "cpu",
                   "progress": False}
        for number, extra in enumerate(a["runs"]):
            if extra.get("resume") and not os.path.exists(options["checkpoint"]):
                raise OutputError("the first call left no checkpoint file to resume from: save one "
                                  "every checkpoint_interval steps and at the last step of a call")
            model = _TinyLM(crash_at=a["crash_at"] if number == 0 else None).to(dtype)
            model.load_state_dict(a["state"] if number == 0 else
                                  {k: v + 0.3 for k, v in a["state"].items()})  # other weights
            try:
                with torch.enable_grad(), _stand_ins(f):
                    history = f(model, *splits, **options, **extra)
            except _Interrupted:
                continue
            if not isinstance(history, dict):
                raise OutputError(f"train should return the history dict, got {type(history).__name__}")
            missing = [key for key in (*_HISTORY, "first_step") if key not in history]
            if missing:
                raise OutputError(f"the history has no {missing[0]!r} entry")
            for key in _HISTORY:
                joined[key] += [float(v) for v in history[key]]
            first_steps.append(int(history["first_step"]))
        del splits
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    return (torch.tensor(joined["batch_loss"], dtype=torch.float64),
            torch.tensor(joined["step"], dtype=torch.long),
            torch.tensor(joined["train_loss"], dtype=torch.float64),
            torch.tensor(joined["val_loss"], dtype=torch.float64),
            torch.tensor(first_steps, dtype=torch.long), params)


def _loop(model, train_tokens, val_tokens, steps, batch_size, context_length, max_lr=2e-3, min_lr=2e-4,
          warmup_steps=100, weight_decay=0.1, max_grad_norm=1.0, eval_interval=250, eval_batches=20, seed=0,
          device=None, checkpoint=None, checkpoint_interval=None, resume=False, stop_after=None,
          progress=True, fused=False, *, schedule_shift=0, eval_after=False, final_eval=True,
          own_generator=True, resume_step=True, generator_first=True, schedule_from_start=False,
          schedule_total="steps", interval_saves=True, last_save=True, save_before_count=False,
          restore_mode=True, obey_stop=True, pass_clip=True):
    """The loop with one step switchable, on the stand-ins."""
    model.to(device).train()
    optimizer = _optimizer_stand_in(model, max_lr, weight_decay)
    generator = torch.Generator().manual_seed(seed)
    step = _load_stand_in(checkpoint, model, optimizer, generator) if resume else 0
    if resume and not generator_first:
        generator = torch.Generator().manual_seed(seed)
    if not resume_step:
        step = 0
    first = step
    history = {"step": [], "train_loss": [], "val_loss": [], "batch_loss": [], "first_step": step,
               "seconds": 0.0}

    def evaluate(at: int) -> None:
        if not restore_mode:
            model.eval()
        history["step"].append(at)
        for split, tokens in (("train_loss", train_tokens), ("val_loss", val_tokens)):
            history[split].append(_eval_stand_in(model, tokens, batch_size, context_length, eval_batches))

    last = steps if stop_after is None or not obey_stop else min(steps, stop_after)
    total = {"steps": steps, "last": last}[schedule_total]
    while step < last:
        if step % eval_interval == 0 and not eval_after:
            evaluate(step)
        x, y = _batch_stand_in(train_tokens, batch_size, context_length, device,
                               generator if own_generator else None)
        at = step - first if schedule_from_start else step
        lr = _schedule_stand_in(at + schedule_shift, max_lr, min_lr, warmup_steps, total)
        clip = (max_grad_norm,) if pass_clip else ()
        history["batch_loss"].append(_step_stand_in(model, optimizer, x, y, lr, *clip))
        if step % eval_interval == 0 and eval_after:
            evaluate(step)
        due = (step + 1 == last and last_save) or (
            interval_saves and checkpoint_interval and (step + 1) % checkpoint_interval == 0)
        if checkpoint is not None and due and save_before_count:
            _save_stand_in(checkpoint, model, optimizer, step, generator)
        step += 1
        if checkpoint is not None and due and not save_before_count:
            _save_stand_in(checkpoint, model, optimizer, step, generator)
    if step == steps and final_eval:
        evaluate(step)
    model.eval()
    return history


TRAIN = Exercise(
    name="train",
    chapter=CHAPTER,
    reference=ref_train.train,
    make_cases=_train_cases,
    run=_run_train,
    outputs=("batch_loss", "eval_step", "train_loss", "val_loss", "first_step", "params"),
    atol64=1e-12,
    forbidden={"transformer_course.training.train_language_model": train_language_model},
    mistakes=[
        Mistake("schedule one step ahead",
                "The learning rate is that of the next step: call cosine_schedule(step, ...) with "
                "the 0-based step of the update about to be made, before step += 1.",
                mutant(_loop, schedule_shift=1)),
        Mistake("evaluated after the update",
                "The evaluation at a step comes before that step's update (step % eval_interval == 0 "
                "at the top of the loop): the loss at step 0 is the untrained model's.",
                mutant(_loop, eval_after=True)),
        Mistake("no final evaluation",
                "The run ends without evaluating: once the last step is made (step == steps), "
                "evaluate once more, so the history ends with the final model's losses.",
                mutant(_loop, final_eval=False)),
        Mistake("batches from the global RNG",
                "The batches come from the global random generator: pass the generator seeded "
                "with seed to sample_batch(train_tokens, batch_size, context_length, device, "
                "generator), so the batches follow seed and a checkpoint can restore them.",
                mutant(_loop, own_generator=False)),
        Mistake("resume restarts at step 0",
                "After resuming, the loop starts again at step 0: continue from the step that "
                "load_checkpoint returns.", mutant(_loop, resume_step=False)),
        Mistake("generator made after the checkpoint is loaded",
                "The generator is seeded again after load_checkpoint restored it, so the resumed "
                "run draws the batches of a fresh run: create it before loading, and leave it.",
                mutant(_loop, generator_first=False)),
        Mistake("schedule restarts on resume",
                "After resuming, the schedule starts again from its warmup: its step is the step "
                "of the whole run, not the number of steps this call made.",
                mutant(_loop, schedule_from_start=True)),
        Mistake("schedule ends at stop_after",
                "The schedule decays over the steps of this call; its total_steps is steps, the "
                "whole run, even when stop_after stops the call earlier.",
                mutant(_loop, schedule_total="last")),
        Mistake("no checkpoint every checkpoint_interval steps",
                "After a crash the run resumes from the last checkpoint, and there was none: "
                "save one whenever the step count is a multiple of checkpoint_interval.",
                mutant(_loop, interval_saves=False)),
        Mistake("no checkpoint at the last step",
                "A call that stops (stop_after) must save a checkpoint at its last step, or the "
                "resumed run repeats the steps made since the previous one.",
                mutant(_loop, last_save=False)),
        Mistake("checkpoint saved before the step is counted",
                "The checkpoint holds the number of updates made so far: save it after step += 1, "
                "or the resumed run makes the last update again.",
                mutant(_loop, save_before_count=True)),
        Mistake("model left in eval mode",
                "After evaluating, the model stays in eval mode and trains that way (dropout "
                "off): estimate_loss restores the mode; anything else that calls model.eval() "
                "must call model.train() afterwards.", mutant(_loop, restore_mode=False)),
        Mistake("stop_after ignored",
                "The call runs all the steps although stop_after says to stop: the last step of "
                "this call is min(steps, stop_after).", mutant(_loop, obey_stop=False)),
        Mistake("max_grad_norm not passed",
                "train_step clips with its default limit: pass max_grad_norm on.",
                mutant(_loop, pass_clip=False)),
    ],
)

register(CROSS_ENTROPY, ADAMW, COSINE_SCHEDULE, CLIP_GRAD_NORM, SAMPLE_BATCH, SAVE_CHECKPOINT,
         LOAD_CHECKPOINT, TRAIN_STEP, TRAIN)
