"""Chapter 9's graded exercises against PyTorch."""

import math

import pytest
import torch
import torch.nn.functional as F

from transformer_course.checks import check
from transformer_course.why import cosine_similarity_matrix, fit_power_law, rnn_forward


@pytest.mark.parametrize("with_h0", [False, True])
def test_rnn_forward_matches_nn_rnn(with_h0):
    torch.manual_seed(0)
    rnn = torch.nn.RNN(3, 5, batch_first=True, nonlinearity="tanh").double()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    h0 = torch.randn(4, 5, dtype=torch.float64) if with_h0 else None
    want_out, want_h = rnn(x, None if h0 is None else h0[None])
    out, h_n = rnn_forward(x, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0, h0)
    assert out.shape == (4, 7, 5) and h_n.shape == (4, 5)
    torch.testing.assert_close(out, want_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_n, want_h[0], rtol=0, atol=1e-12)


def test_using_nn_rnn_is_reported():
    def rnn_forward(x, weight_ih, weight_hh, bias_ih, bias_hh, h0=None):  # the shortcut
        rnn = torch.nn.RNN(x.size(-1), weight_hh.size(0), batch_first=True).to(x.dtype)
        rnn.load_state_dict({"weight_ih_l0": weight_ih, "weight_hh_l0": weight_hh,
                             "bias_ih_l0": bias_ih, "bias_hh_l0": bias_hh})
        out, h_n = rnn(x, None if h0 is None else h0[None])
        return out, h_n[0]

    result = check(rnn_forward)
    assert result.status == "forbidden"
    assert "torch.nn.RNN" in str(result)


def test_fit_power_law_recovers_a_law_and_matches_polyfit():
    n = torch.logspace(2, 7, 6, dtype=torch.float64)
    coefficient, exponent = fit_power_law(n, 7.0 * n ** -0.3)
    assert coefficient.dim() == 0 and exponent.dim() == 0
    assert math.isclose(coefficient.item(), 7.0, rel_tol=1e-10)
    assert math.isclose(exponent.item(), -0.3, rel_tol=1e-10)
    noisy = 2.0 * n ** -0.1 * torch.tensor([1.1, 0.9, 1.05, 0.97, 1.02, 1.0], dtype=torch.float64)
    coefficient, exponent = fit_power_law(n, noisy)
    solution = torch.linalg.lstsq(torch.stack([torch.ones(6, dtype=torch.float64), n.log()], 1),
                                  noisy.log()[:, None]).solution
    assert math.isclose(exponent.item(), solution[1].item(), rel_tol=1e-9)
    assert math.isclose(coefficient.item(), solution[0].exp().item(), rel_tol=1e-9)


@pytest.mark.parametrize("n_params, losses, match", [
    (torch.ones(3), torch.ones(2), "same length"),
    (torch.tensor([1.0]), torch.tensor([1.0]), "at least 2"),
    (torch.tensor([1.0, -2.0]), torch.tensor([1.0, 2.0]), "positive"),
])
def test_fit_power_law_rejects_bad_input(n_params, losses, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(n_params, losses)


def test_cosine_similarity_matrix_matches_torch():
    a, b = torch.randn(5, 7, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    want = F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1)
    torch.testing.assert_close(cosine_similarity_matrix(a, b), want)
    a[2] = 0.0
    assert cosine_similarity_matrix(a, b)[2].eq(0).all()
