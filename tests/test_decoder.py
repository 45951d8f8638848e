"""Chapter 5: the decoder equals PyTorch's; masks and greedy decoding behave as specified."""

import pytest
import torch
from torch import nn

from transformer_course.attention import causal_mask, padding_mask
from transformer_course.decoder import (
    Decoder,
    DecoderLayer,
    Transformer,
    greedy_decode,
    state_dict_from_torch_decoder_layer,
)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_decoder_layer_equals_torch(norm_first, activation):
    torch.manual_seed(0)
    theirs = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, activation=activation,
                                        batch_first=True, norm_first=norm_first).double().eval()
    ours = DecoderLayer(16, 4, 32, activation=activation, norm_first=norm_first).double().eval()
    ours.load_state_dict(state_dict_from_torch_decoder_layer(theirs))
    tgt = torch.randn(3, 5, 16, dtype=torch.float64)
    memory = torch.randn(3, 7, 16, dtype=torch.float64)
    src_mask = padding_mask(torch.tensor([7, 3, 5]), 7)
    expected = theirs(tgt, memory, tgt_mask=~causal_mask(5),  # torch: True = hidden
                      memory_key_padding_mask=~src_mask[:, 0])
    assert (ours(tgt, memory, causal_mask(5), src_mask) - expected).abs().max() < 1e-6


def test_decoder_is_causal_by_default():
    torch.manual_seed(0)
    dec = Decoder(vocab_size=9, d_model=16, n_heads=2, d_ff=32, n_layers=2).eval()
    memory = torch.randn(1, 4, 16)
    ids = torch.randint(0, 9, (1, 6))
    changed = ids.clone()
    changed[0, 4:] = (changed[0, 4:] + 1) % 9  # change only the future of position 3
    out, out_changed = dec(ids, memory), dec(changed, memory)
    torch.testing.assert_close(out[:, :4], out_changed[:, :4])
    assert not torch.allclose(out[:, 4:], out_changed[:, 4:])


def test_source_padding_is_invisible_to_the_transformer():
    torch.manual_seed(0)
    model = Transformer(11, 7, d_model=16, n_heads=2, d_ff=32, n_layers=2).eval()
    src = torch.randint(1, 11, (1, 4))
    tgt = torch.randint(0, 7, (1, 3))
    padded = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    logits = model(src, tgt)
    logits_padded = model(padded, tgt, padding_mask(torch.tensor([4]), 7))
    torch.testing.assert_close(logits, logits_padded, rtol=1e-5, atol=1e-5)
    assert model(src, tgt).shape == (1, 3, 7)


def test_greedy_decode_shape_bos_and_eos_filling():
    torch.manual_seed(0)
    model = Transformer(11, 7, d_model=16, n_heads=2, d_ff=32, n_layers=1).eval()
    with torch.no_grad():
        model.generator.bias[2] = -1e4  # token 2 is never chosen: no row ends early
    out = greedy_decode(model, torch.randint(0, 11, (3, 5)), max_len=6, bos_id=1, eos_id=2)
    assert out.shape == (3, 6) and out.dtype == torch.long
    assert (out[:, 0] == 1).all()
    with torch.no_grad():
        model.generator.bias[2] = 1e4  # token 2 always wins: every row ends at once
    out = greedy_decode(model, torch.randint(0, 11, (3, 5)), max_len=6, bos_id=1, eos_id=2)
    assert out.tolist() == [[1, 2]] * 3


def test_greedy_decode_matches_stepwise_argmax_of_forward():
    torch.manual_seed(1)
    model = Transformer(11, 7, d_model=16, n_heads=2, d_ff=32, n_layers=2).eval()
    src = torch.randint(0, 11, (2, 5))
    out = greedy_decode(model, src, max_len=5, bos_id=1, eos_id=99)  # 99: never produced
    with torch.no_grad():
        logits = model(src, out[:, :-1])
    assert torch.equal(logits.argmax(-1), out[:, 1:])
