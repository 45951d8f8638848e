"""Chapter 7's cross-entropy equals PyTorch's, masks the ignore index and stays finite
where the direct formula overflows."""

import pytest
import torch
import torch.nn.functional as F

from transformer_course.losses import cross_entropy


@pytest.mark.parametrize("shape", [(7, 5), (2, 6, 11), (2, 3, 4, 9)])
def test_equals_torch_in_float64(shape):
    g = torch.Generator().manual_seed(len(shape))
    logits = torch.randn(*shape, generator=g, dtype=torch.float64) * 4
    targets = torch.randint(shape[-1], shape[:-1], generator=g)
    want = F.cross_entropy(logits.reshape(-1, shape[-1]), targets.reshape(-1))
    torch.testing.assert_close(cross_entropy(logits, targets), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("ignore_index", [-100, 0, 3])
def test_ignore_index_is_left_out_of_the_mean(ignore_index):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 8, 6, generator=g, dtype=torch.float64)
    targets = torch.randint(6, (4, 8), generator=g)
    targets[:, -3:] = ignore_index
    want = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=ignore_index)
    torch.testing.assert_close(cross_entropy(logits, targets, ignore_index), want, rtol=0, atol=1e-12)


def test_large_and_far_apart_logits_stay_finite():
    logits = torch.tensor([[900.0, 0.0, -5.0], [-900.0, -1000.0, -950.0], [0.0, -150.0, 3.0]])
    targets = torch.tensor([1, 0, 1])
    loss = cross_entropy(logits, targets)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, F.cross_entropy(logits, targets))


def test_gradient_equals_torch():
    g = torch.Generator().manual_seed(2)
    ours = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    theirs = ours.detach().clone().requires_grad_()
    targets = torch.tensor([0, 6, -100, 3, 3])
    cross_entropy(ours, targets).backward()
    F.cross_entropy(theirs, targets).backward()
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=0, atol=1e-14)
