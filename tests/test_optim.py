"""Chapter 7's AdamW, schedule and clipping against PyTorch's."""

import math

import pytest
import torch

from transformer_course.optim import AdamW, clip_grad_norm, cosine_schedule
from transformer_course.training import warmup_cosine


def _run(optimizer_cls, params, steps, lrs=None, **options):
    groups = [{"params": params[:2]}, {"params": params[2:], "weight_decay": 0.0, "lr": 3e-2}]
    optimizer = optimizer_cls(groups, **options)
    for step in range(steps):
        if lrs is not None:
            optimizer.param_groups[0]["lr"] = lrs[step]
        optimizer.zero_grad()
        (params[0].sin() @ params[1]).pow(2).sum().add(params[2].pow(3).sum()).backward()
        optimizer.step()
    return optimizer


@pytest.mark.parametrize("options", [{}, {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-6,
                                         "weight_decay": 0.3}])
def test_adamw_equals_torch_after_many_steps(options):
    torch.manual_seed(0)
    ours = [torch.randn(6, 4, dtype=torch.float64, requires_grad=True), torch.randn(4, dtype=torch.float64,
            requires_grad=True), torch.randn(3, dtype=torch.float64, requires_grad=True)]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    lrs = [0.01 * (1 + math.sin(i)) for i in range(200)]
    mine = _run(AdamW, ours, 200, lrs, **options)
    _run(torch.optim.AdamW, theirs, 200, lrs, **options)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert mine.state[ours[0]]["step"] == 200


def test_adamw_skips_parameters_without_gradients_and_round_trips_its_state():
    frozen = torch.ones(3, requires_grad=True)
    live = torch.ones(3, requires_grad=True)
    optimizer = AdamW([frozen, live], lr=0.1)
    live.sum().backward()
    optimizer.step()
    assert torch.equal(frozen, torch.ones(3)) and frozen not in optimizer.state
    again = AdamW([frozen, live], lr=0.1)
    again.load_state_dict(optimizer.state_dict())
    assert torch.equal(again.state[live]["exp_avg"], optimizer.state[live]["exp_avg"])


def test_schedule_equals_the_given_helper_and_keeps_its_floor():
    factor = warmup_cosine(10, 100, min_factor=0.1)
    for step in range(130):
        assert cosine_schedule(step, 2.0, 0.2, 10, 100) == pytest.approx(2.0 * factor(step), abs=1e-12)
    assert cosine_schedule(9, 1.0, 0.1, 10, 100) == 1.0
    assert cosine_schedule(100, 1.0, 0.1, 10, 100) == pytest.approx(0.1)
    assert cosine_schedule(10_000, 1.0, 0.1, 10, 100) == pytest.approx(0.1)


@pytest.mark.parametrize("max_norm, scale", [(1.0, 3.0), (50.0, 1.0), (1e-3, 1e-3)])
def test_clip_equals_torch(max_norm, scale):
    torch.manual_seed(1)
    ours = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in [(5, 4), (4,), (2, 2, 2)]]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if i != 1:  # the second has no gradient
            a.grad = torch.randn(a.shape, dtype=torch.float64) * scale
            b.grad = a.grad.clone()
    norm = clip_grad_norm(ours, max_norm)
    torch.testing.assert_close(norm, torch.nn.utils.clip_grad_norm_(theirs, max_norm), rtol=0, atol=1e-15)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-15)
