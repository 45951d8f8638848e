"""Chapter 4: the encoder equals PyTorch's, layer by layer, after copying weights."""

from contextlib import nullcontext

import pytest
import torch
from torch import nn

from transformer_course.attention import padding_mask
from transformer_course.encoder import (
    Encoder,
    EncoderLayer,
    FeedForward,
    LayerNorm,
    state_dict_from_torch_encoder_layer,
)
from transformer_course.multi_head import fused_kernels


def test_layer_norm_matches_torch_with_affine_parameters():
    torch.manual_seed(0)
    ours, theirs = LayerNorm(12, eps=1e-3).double(), nn.LayerNorm(12, eps=1e-3).double()
    with torch.no_grad():
        theirs.weight.normal_()
        theirs.bias.normal_()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(3, 5, 12, dtype=torch.float64) * 4 + 2
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-12)


def test_feed_forward_gelu_is_exact():
    torch.manual_seed(0)
    ff = FeedForward(8, 16, activation="gelu")
    x = torch.randn(2, 3, 8)
    expected = ff.linear2(nn.functional.gelu(ff.linear1(x)))
    torch.testing.assert_close(ff(x), expected)
    with pytest.raises(ValueError, match="activation"):
        FeedForward(8, 16, activation="swish")


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_equals_torch(norm_first, activation):
    torch.manual_seed(0)
    theirs = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=activation,
                                        batch_first=True, norm_first=norm_first).double().eval()
    ours = EncoderLayer(16, 4, 32, activation=activation, norm_first=norm_first).double().eval()
    ours.load_state_dict(state_dict_from_torch_encoder_layer(theirs))
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    mask = padding_mask(torch.tensor([6, 2, 4]), 6)
    expected = theirs(x, src_key_padding_mask=~mask[:, 0])  # torch: True = padding
    assert (ours(x, mask) - expected).abs().max() < 1e-6
    assert (ours(x) - theirs(x)).abs().max() < 1e-6


def test_padding_does_not_leak_into_real_tokens():
    torch.manual_seed(0)
    enc = Encoder(vocab_size=10, d_model=16, n_heads=2, d_ff=32, n_layers=2).eval()
    ids = torch.randint(1, 10, (1, 4))
    padded = torch.cat([ids, torch.tensor([[0, 0, 0]])], dim=1)
    alone = enc(ids)
    with_pad = enc(padded, padding_mask(torch.tensor([4]), 7))
    torch.testing.assert_close(with_pad[:, :4], alone, rtol=1e-5, atol=1e-5)


def test_encoder_pre_norm_has_final_norm_and_post_norm_has_none():
    assert Encoder(10, 16, 2, 32, 1, norm_first=True).norm is not None
    assert Encoder(10, 16, 2, 32, 1, norm_first=False).norm is None


def test_fused_layer_norm_gives_the_same_outputs_and_gradients():
    """Inside fused_kernels the LayerNorm runs F.layer_norm: in float64 the same output
    and gradients (1e-10)."""
    torch.manual_seed(0)
    norm = LayerNorm(6, eps=1e-3).double()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = (torch.randn(2, 5, 6, dtype=torch.float64) * 3 + 1).requires_grad_()
    weights = torch.randn(2, 5, 6, dtype=torch.float64)
    results = []
    for fused in (False, True):
        with fused_kernels(norm) if fused else nullcontext() as report:
            norm(x)  # the first call inside the switch runs both ways
            norm.zero_grad()
            x.grad = None
            out = norm(x)
            (out * weights).sum().backward()
        results.append([out.detach(), x.grad, norm.weight.grad, norm.bias.grad])
    assert report.fused == {"LayerNorm": 1}
    for explicit, fused in zip(*results, strict=True):
        torch.testing.assert_close(fused, explicit, rtol=0, atol=1e-10)
