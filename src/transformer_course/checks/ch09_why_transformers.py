"""Chapter 09 (why Transformers): visible cases and the catalogue of known mistakes.

Behaviours the chapter states, and the case that exercises each:

rnn_forward
    both biases, tanh, transposed weights,   every case; "D_in == H" (a missing
    state carried                            transpose of a square weight is silent)
    h0 zeros when None; a given h0 used      "h0=None"; "given h0, float64"
    output (B, L, H), h_n the last state     every case; "one time step with h0"
    no nn.RNN / nn.RNNCell                   forbidden calls
fit_power_law
    line through (log n, log loss);          "exact law", "noisy law"
    coefficient exp(intercept)
    any order; two points; dtype kept        "unsorted sizes, float32", "two points"
cosine_similarity_matrix
    rows normalised over dim=-1, both a, b   every case; "rows on different scales"
    a zero row gives 0 (norm clamped)        "a row of zeros has similarity 0"
    tiny vectors are not shifted by an eps   "tiny vectors (scale 1e-5)"
    no F.cosine_similarity                   forbidden calls
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer_course import why as ref
from transformer_course.checks.exercise import Case, Exercise, Mistake
from transformer_course.checks.kit import mutant, randn
from transformer_course.checks.registry import register

CHAPTER = "09_why_transformers"

# --------------------------------------------------------------------------- rnn_forward


def _rnn_args(g: torch.Generator, batch: int, length: int, d_in: int, hidden: int,
              dtype: torch.dtype = torch.float32, with_h0: bool = False, scale: float = 0.5):
    return {
        "x": randn(g, batch, length, d_in, dtype=dtype),
        "weight_ih": randn(g, hidden, d_in, dtype=dtype) * scale,
        "weight_hh": randn(g, hidden, hidden, dtype=dtype) * scale,
        "bias_ih": randn(g, hidden, dtype=dtype) * scale,
        "bias_hh": randn(g, hidden, dtype=dtype) * scale,
        "h0": randn(g, batch, hidden, dtype=dtype) if with_h0 else None,
    }


def _rnn_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    return [
        Case("B=2, L=5, D_in=3, H=4, h0=None", _rnn_args(g, 2, 5, 3, 4)),
        Case("given h0, float64: B=3, L=4, D_in=6, H=5", _rnn_args(g, 3, 4, 6, 5, f64, with_h0=True)),
        Case("D_in == H, float64: B=2, L=6, D_in=H=4", _rnn_args(g, 2, 6, 4, 4, f64)),
        Case("one time step with h0: B=4, L=1, D_in=2, H=3", _rnn_args(g, 4, 1, 2, 3, with_h0=True)),
        Case("longer sequence, float64: B=1, L=12, D_in=5, H=8",
             _rnn_args(g, 1, 12, 5, 8, f64, with_h0=True, scale=0.3)),
    ]


def _run_rnn(f, a):
    return f(a["x"], a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"], h0=a["h0"])


def _rnn(x, weight_ih, weight_hh, bias_ih, bias_hh, h0=None, *, act=torch.tanh, carry=True,
         t_ih=True, t_hh=True, use_bias_hh=True):
    """The RNN with one thing changed, to build the catalogue's mutants."""
    w_ih = weight_ih.T if t_ih else weight_ih
    w_hh = weight_hh.T if t_hh else weight_hh
    start = x.new_zeros(x.size(0), weight_hh.size(0)) if h0 is None else h0
    h, states = start, []
    for t in range(x.size(1)):
        prev = h if carry else start
        pre = x[:, t] @ w_ih + bias_ih + prev @ w_hh
        h = act(pre + bias_hh if use_bias_hh else pre)
        states.append(h)
    return torch.stack(states, dim=1), h


def _rnn_first_state(*args, **kwargs):
    output, _ = ref.rnn_forward(*args, **kwargs)
    return output, output[:, 0]


def _rnn_time_major(*args, **kwargs):
    output, h_n = ref.rnn_forward(*args, **kwargs)
    return output.transpose(0, 1), h_n


def _rnn_ignores_h0(x, weight_ih, weight_hh, bias_ih, bias_hh, h0=None):
    return ref.rnn_forward(x, weight_ih, weight_hh, bias_ih, bias_hh, None)


RNN_FORWARD = Exercise(
    name="rnn_forward",
    chapter=CHAPTER,
    reference=ref.rnn_forward,
    make_cases=_rnn_cases,
    run=_run_rnn,
    outputs=("output", "h_n"),
    forbidden={"torch.nn.RNNCell (torch.rnn_tanh_cell)": torch.rnn_tanh_cell,
               "torch.nn.RNN (torch.rnn_tanh)": torch.rnn_tanh},
    mistakes=[
        Mistake("one bias only",
                "Only one of the two biases is added. nn.RNN adds both: "
                "x_t W_ih^T + bias_ih + h_{t-1} W_hh^T + bias_hh.",
                mutant(_rnn, use_bias_hh=False)),
        Mistake("no tanh",
                "The new state is not passed through tanh: h_t = tanh(x_t W_ih^T + b_ih + "
                "h_{t-1} W_hh^T + b_hh).",
                mutant(_rnn, act=lambda z: z)),
        Mistake("state not carried",
                "Every step starts again from h0: the previous step's state h_{t-1} must be "
                "fed into the next step (update the variable inside the loop).",
                mutant(_rnn, carry=False)),
        Mistake("weight_ih not transposed",
                "weight_ih is (H, D_in), like nn.Linear's weight: multiply by its transpose, "
                "x_t @ weight_ih.T.",
                mutant(_rnn, t_ih=False)),
        Mistake("weight_hh not transposed",
                "weight_hh is used as h @ weight_hh; nn.RNN computes h @ weight_hh.T. A square "
                "matrix multiplies either way without an error, so this one is silent.",
                mutant(_rnn, t_hh=False)),
        Mistake("first state as h_n",
                "h_n is the state after the LAST step, output[:, -1], not the first.",
                _rnn_first_state),
        Mistake("time-major output",
                "output is (L, B, H); this course is batch-first: stack the states along "
                "dim=1 to get (B, L, H).",
                _rnn_time_major),
        Mistake("h0 ignored",
                "The given h0 is ignored; start from zeros only when h0 is None.",
                _rnn_ignores_h0),
    ],
)

# --------------------------------------------------------------------------- fit_power_law


def _power_law_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    sizes = torch.tensor([1e3, 4e3, 2e4, 1e5, 6e5], dtype=f64)
    noisy_sizes = torch.logspace(3, 6, 7, dtype=f64)
    noise = (0.05 * randn(g, 7, dtype=f64)).exp()
    unsorted = torch.tensor([5e4, 2e3, 3e5, 8e3, 1.2e5, 600.0])
    return [
        Case("exact law: loss = 5 * n^-0.1, float64", {"n_params": sizes, "losses": 5.0 * sizes ** -0.1}),
        Case("noisy law: 3 * n^-0.25 with 5% noise, float64",
             {"n_params": noisy_sizes, "losses": 3.0 * noisy_sizes ** -0.25 * noise}),
        Case("unsorted sizes, float32: 2 * n^-0.07",
             {"n_params": unsorted, "losses": 2.0 * unsorted ** -0.07}),
        Case("two points, float64: (100, 4.0) and (10000, 1.0)",
             {"n_params": torch.tensor([100.0, 1e4], dtype=f64),
              "losses": torch.tensor([4.0, 1.0], dtype=f64)}),
    ]


def _line(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares slope and intercept of y on x."""
    dx, dy = x - x.mean(), y - y.mean()
    slope = (dx * dy).sum() / (dx * dx).sum()
    return slope, y.mean() - slope * x.mean()


def _fit_linear_space(n_params, losses):
    slope, intercept = _line(n_params, losses)
    return intercept, slope


def _fit_swapped(n_params, losses):
    slope, intercept = _line(losses.log(), n_params.log())
    return intercept.exp(), slope


def _fit_log10_exp(n_params, losses):
    slope, intercept = _line(n_params.log10(), losses.log10())
    return intercept.exp(), slope


def _fit_exp_exponent(n_params, losses):
    coefficient, exponent = ref.fit_power_law(n_params, losses)
    return coefficient, exponent.exp()


def _fit_log_coefficient(n_params, losses):
    coefficient, exponent = ref.fit_power_law(n_params, losses)
    return coefficient.log(), exponent


FIT_POWER_LAW = Exercise(
    name="fit_power_law",
    chapter=CHAPTER,
    reference=ref.fit_power_law,
    make_cases=_power_law_cases,
    run=lambda f, a: f(a["n_params"], a["losses"]),
    outputs=("coefficient", "exponent"),
    mistakes=[
        Mistake("fit in linear space",
                "You fit a straight line to the raw numbers; a power law is a straight line "
                "between log(n_params) and log(loss): take logarithms first.",
                _fit_linear_space),
        Mistake("swapped axes",
                "You regress log(n_params) on log(loss); the loss is what the size predicts, "
                "so regress log(losses) (y) on log(n_params) (x).",
                _fit_swapped),
        Mistake("log10 then exp",
                "The line was fit with log10 but the coefficient undone with exp: use the "
                "same base for both (natural log and exp, or log10 and 10**).",
                _fit_log10_exp),
        Mistake("exp of the exponent",
                "The exponent is the slope itself; only the intercept is exponentiated "
                "(coefficient = exp(intercept)).",
                _fit_exp_exponent),
        Mistake("coefficient left in log space",
                "The coefficient is exp(intercept); you returned the intercept, log(coefficient).",
                _fit_log_coefficient),
    ],
)

# --------------------------------------------------------------------------- cosine similarity


def _cosine_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    same = randn(g, 4, 6)
    scales = torch.logspace(-1, 2, 6, dtype=torch.float64)[:, None]
    with_zero = randn(g, 3, 5)
    with_zero[1] = 0.0
    return [
        Case("a (3, 4), b (5, 4)", {"a": randn(g, 3, 4), "b": randn(g, 5, 4)}),
        Case("float64, rows on different scales: a (6, 16), b (2, 16)",
             {"a": randn(g, 6, 16, dtype=torch.float64) * scales,
              "b": randn(g, 2, 16, dtype=torch.float64) * 7.0}),
        Case("a with itself (diagonal is 1): (4, 6)", {"a": same, "b": same.clone()}),
        Case("tiny vectors (scale 1e-5): a (3, 8), b (4, 8)",
             {"a": randn(g, 3, 8) * 1e-5, "b": randn(g, 4, 8) * 1e-5}),
        Case("a row of zeros has similarity 0: a (3, 5), b (2, 5)",
             {"a": with_zero, "b": randn(g, 2, 5)}),
    ]


def _cos_no_norm(a, b):
    return a @ b.T


def _cos_wrong_dim(a, b):
    return (a / a.norm(dim=0, keepdim=True)) @ (b / b.norm(dim=0, keepdim=True)).T


def _cos_eps_added(a, b):
    return (a / (a.norm(dim=-1, keepdim=True) + 1e-6)) @ (b / (b.norm(dim=-1, keepdim=True) + 1e-6)).T


def _cos_squared_norms(a, b):
    return (a @ b.T) / (a.pow(2).sum(-1)[:, None] * b.pow(2).sum(-1)[None, :]).clamp_min(1e-16)


def _cos_only_a(a, b):
    return (a / a.norm(dim=-1, keepdim=True).clamp_min(1e-8)) @ b.T


COSINE = Exercise(
    name="cosine_similarity_matrix",
    chapter=CHAPTER,
    reference=ref.cosine_similarity_matrix,
    make_cases=_cosine_cases,
    run=lambda f, a: f(a["a"], a["b"]),
    forbidden={"F.cosine_similarity": F.cosine_similarity},
    mistakes=[
        Mistake("no normalisation",
                "a @ b.T is the dot product; divide each row by its length (norm over dim=-1) "
                "first, so that only the angle counts.", _cos_no_norm),
        Mistake("normalised over the wrong dim",
                "You divide by norms taken over dim=0 (down the columns); each ROW is a vector, "
                "so take the norm over dim=-1 with keepdim=True.", _cos_wrong_dim),
        Mistake("eps that changes results",
                "Adding eps to every norm shifts the result for short vectors; clamp the norm "
                "instead (norm.clamp_min(1e-8)), which only acts on (near-)zero rows.",
                _cos_eps_added),
        Mistake("divided by squared norms",
                "You divide by |a|^2 |b|^2 (sums of squares); the cosine divides by the norms "
                "|a| |b|, the square roots.", _cos_squared_norms),
        Mistake("only a normalised",
                "Normalise the rows of b too: cos = a_i . b_j / (|a_i| |b_j|).", _cos_only_a),
    ],
)

register(RNN_FORWARD, FIT_POWER_LAW, COSINE)
