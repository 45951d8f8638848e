"""Chapter 04 (encoder): visible cases and the catalogue of known mistakes.

Behaviours the chapter states, and the case that exercises each:

LayerNorm
    last dim, biased variance, eps inside    every case; "eps=0.5", "tiny variance"
    the square root, then * weight + bias    "non-trivial weight and bias"
    default eps 1e-5; weight ones, bias      "default eps, weight and bias as initialised"
    zeros at creation
    dtype of x                               "(3, 4, 6) float64"
    no F.layer_norm                          forbidden calls
FeedForward
    ``linear2(act(linear1(x)))``; relu or    every case; "gelu (exact), ..."
    exact (erf) gelu
    default activation relu; dropout none    "default activation (relu), dropout=0.5 in
    in eval                                  eval mode (no dropout)"
EncoderLayer
    post-norm ``norm(x + sublayer(x))`` and  "post-norm, ..." and "pre-norm ..." cases
    pre-norm ``x + sublayer(norm(x))``
    mask reaches the self-attention          the "padding mask" cases
    ``eps`` reaches both norms               "post-norm, eps=0.5 ...", "pre-norm,
                                             eps=0.5 ..."
    defaults (relu, post-norm); dropout      "defaults (relu, post-norm), dropout=0.5 in
    none in eval                             eval mode (no dropout)"
Encoder
    embeddings * sqrt(d_model), positions,   every case
    chained layers, mask to every layer      "post-norm, padding mask, float64"
    final norm only when norm_first          "pre-norm (final LayerNorm) ..."; the
                                             post-norm cases (no final norm)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_course import encoder as ref
from transformer_course.attention import padding_mask
from transformer_course.checks.exercise import Case, Exercise, Mistake
from transformer_course.checks.kit import STATE, mutant, randn, random_state, run_module
from transformer_course.checks.registry import register

CHAPTER = "04_encoder"
F64 = torch.float64


# --------------------------------------------------------------------------- LayerNorm


def _layernorm_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name, shape, eps=1e-5, dtype=torch.float32, scale=1.0):
        d = shape[-1]
        state = {"weight": 1.0 + 0.5 * randn(g, d, dtype=dtype), "bias": randn(g, d, dtype=dtype)}
        x = scale * randn(g, *shape, dtype=dtype) + 3.0
        return Case(name, {"init": {"d_model": d, "eps": eps}, STATE: state, "x": x})

    return [
        case("(2, 5, 8), non-trivial weight and bias", (2, 5, 8)),
        case("(3, 4, 6) float64", (3, 4, 6), dtype=F64),
        case("(4, 16), eps=0.5 (where eps goes matters)", (4, 16), eps=0.5),
        case("(2, 3, 5), tiny variance (inputs x 1e-3), eps=1e-3", (2, 3, 5), eps=1e-3, scale=1e-3),
        Case("default eps, weight and bias as initialised (ones, zeros): (3, 4) x 1e-3",
             {"init": {"d_model": 4}, STATE: None, "x": 1e-3 * randn(g, 3, 4) - 2.0}),
    ]


class _LayerNormUnbiased(ref.LayerNorm):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(x.var(-1, keepdim=True) + self.eps) * self.weight + self.bias


class _LayerNormEpsOutside(ref.LayerNorm):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        std = x.var(-1, keepdim=True, unbiased=False).sqrt()
        return (x - mean) / (std + self.eps) * self.weight + self.bias


class _LayerNormWrongDim(ref.LayerNorm):
    def forward(self, x):
        mean = x.mean(0, keepdim=True)
        var = x.var(0, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class _LayerNormNoAffine(ref.LayerNorm):
    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + self.eps)


class _LayerNormNoCentering(ref.LayerNorm):
    def forward(self, x):
        var = x.var(-1, keepdim=True, unbiased=False)
        return x / torch.sqrt(var + self.eps) * self.weight + self.bias


class _LayerNormRandomInit(ref.LayerNorm):
    def __init__(self, d_model, eps=1e-5):
        super().__init__(d_model, eps)
        self.weight = nn.Parameter(torch.randn(d_model))
        self.bias = nn.Parameter(torch.randn(d_model))


LAYER_NORM = Exercise(
    name="LayerNorm",
    chapter=CHAPTER,
    reference=ref.LayerNorm,
    make_cases=_layernorm_cases,
    run=lambda cls, a: run_module(cls, a, "x"),
    forbidden={"F.layer_norm": F.layer_norm},
    mistakes=[
        Mistake("unbiased variance",
                "You use the unbiased variance (divided by D - 1); layer normalization uses the "
                "biased one (divided by D): x.var(dim=-1, unbiased=False, keepdim=True).",
                _LayerNormUnbiased),
        Mistake("eps outside the square root",
                "eps is added to the standard deviation; add it to the variance, inside the "
                "square root: (x - mean) / torch.sqrt(var + eps).", _LayerNormEpsOutside),
        Mistake("wrong dimension",
                "You normalise over the batch dimension; normalise each feature vector over "
                "the last dimension (dim=-1, keepdim=True).", _LayerNormWrongDim),
        Mistake("affine parameters ignored",
                "The result is not multiplied by self.weight and shifted by self.bias; the "
                "learned scale and shift come after the normalisation.", _LayerNormNoAffine),
        Mistake("mean not subtracted",
                "You divide by the standard deviation without subtracting the mean first.",
                _LayerNormNoCentering),
        Mistake("parameters not initialised",
                "weight and bias start random; a LayerNorm starts as the plain normalisation: "
                "weight = nn.Parameter(torch.ones(d_model)), bias = "
                "nn.Parameter(torch.zeros(d_model)).", _LayerNormRandomInit),
    ],
)

# --------------------------------------------------------------------------- FeedForward


def _ff_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name, d_model, d_ff, activation, shape, dtype=torch.float32, dropout=None):
        init = {"d_model": d_model, "d_ff": d_ff}
        if activation is not None:  # None: the default, relu
            init["activation"] = activation
        if dropout is not None:
            init["dropout"] = dropout
        state = random_state(ref.FeedForward(**init), g, dtype, scale=1.5)
        return Case(name, {"init": init, STATE: state, "x": randn(g, *shape, d_model, dtype=dtype)})

    return [
        case("relu, (2, 5, 8) -> d_ff 32", 8, 32, "relu", (2, 5)),
        case("gelu (exact), (3, 4, 6) -> d_ff 24", 6, 24, "gelu", (3, 4)),
        case("gelu, float64, (2, 7, 16) -> d_ff 12", 16, 12, "gelu", (2, 7), dtype=F64),
        case("relu, float64, (4, 10)", 10, 40, "relu", (4,), dtype=F64),
        case("default activation (relu), dropout=0.5 in eval mode (no dropout), (2, 3, 8)",
             8, 16, None, (2, 3), dropout=0.5),
    ]


class _FeedForwardMutant(ref.FeedForward):
    """The reference feed-forward network with one step done wrong (a flag)."""

    approximate = "none"  # "tanh": GELU's tanh approximation
    always_relu = False
    no_activation = False
    activation_last = False
    dropout_always = False  # F.dropout's training=True default, whatever the mode

    def act(self, h: Tensor) -> Tensor:
        if self.no_activation:
            return h
        if self.always_relu or self.activation == "relu":
            return F.relu(h)
        return F.gelu(h, approximate=self.approximate)

    def forward(self, x):
        if self.activation_last:
            return self.act(self.linear2(self.linear1(x)))
        h = self.act(self.linear1(x))
        return self.linear2(F.dropout(h, self.dropout.p) if self.dropout_always else h)


FEED_FORWARD = Exercise(
    name="FeedForward",
    chapter=CHAPTER,
    reference=ref.FeedForward,
    make_cases=_ff_cases,
    run=lambda cls, a: run_module(cls, a, "x"),
    mistakes=[
        Mistake("tanh GELU",
                "You use the tanh approximation of GELU; the exercise asks for the exact, "
                "erf-based GELU (F.gelu(x), approximate='none').",
                mutant(_FeedForwardMutant, approximate="tanh")),
        Mistake("always ReLU",
                "activation='gelu' is ignored: pick ReLU or GELU from self.activation.",
                mutant(_FeedForwardMutant, always_relu=True)),
        Mistake("no activation",
                "There is no non-linearity between the two linear layers, so the network is "
                "one linear map: apply the activation to linear1's output.",
                mutant(_FeedForwardMutant, no_activation=True)),
        Mistake("activation after linear2",
                "The activation comes after linear2; it belongs between linear1 and linear2.",
                mutant(_FeedForwardMutant, activation_last=True)),
        Mistake("dropout in eval mode",
                "Dropout changes the output in eval mode: F.dropout(h, p) drops whatever the "
                "mode (its training argument defaults to True). Apply the nn.Dropout module "
                "(self.dropout(h)), which does nothing after model.eval().",
                mutant(_FeedForwardMutant, dropout_always=True)),
    ],
)

# --------------------------------------------------------------------------- EncoderLayer


def _encoder_layer_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name, norm_first, activation, batch, length, lengths=None, dtype=torch.float32,
             eps=1e-5):
        init = {"d_model": 16, "n_heads": 4, "d_ff": 32, "activation": activation,
                "norm_first": norm_first, "eps": eps}
        if norm_first is None:  # the defaults: relu, post-norm, eps 1e-5; and dropout
            init = {"d_model": 16, "n_heads": 4, "d_ff": 32, "dropout": 0.5}
        state = random_state(ref.EncoderLayer(**init), g, dtype, scale=1.5)
        mask = None if lengths is None else padding_mask(torch.tensor(lengths), length)
        return Case(name, {"init": init, STATE: state,
                           "x": randn(g, batch, length, 16, dtype=dtype), "mask": mask})

    return [
        case("post-norm, relu, no mask", False, "relu", 2, 5),
        case("post-norm, gelu, padding mask, float64", False, "gelu", 3, 6, [6, 2, 4], F64),
        case("pre-norm (norm_first=True), relu, padding mask", True, "relu", 3, 5, [5, 3, 1]),
        case("pre-norm, gelu, float64, eps=1e-12", True, "gelu", 2, 4, [4, 2], F64, 1e-12),
        case("post-norm, eps=0.5 (it reaches both norms), padding mask", False, "relu", 2, 5,
             [5, 3], eps=0.5),
        case("pre-norm, eps=0.5 (it reaches both norms)", True, "gelu", 2, 4, eps=0.5),
        case("defaults (relu, post-norm), dropout=0.5 in eval mode (no dropout)", None, None,
             2, 5, [5, 4]),
    ]


class _EncoderLayerMutant(ref.EncoderLayer):
    """The reference layer with one step done wrong (a flag)."""

    pre_norm = None  # None: as norm_first says; True or False: always that
    residual = True  # around the attention sub-layer
    norm_outside = False  # post-norm as x + norm(sublayer(x))
    pass_mask = True

    def forward(self, x, mask=None):
        mask = mask if self.pass_mask else None
        if self.norm_first if self.pre_norm is None else self.pre_norm:
            h = self.norm1(x)
            a = self.self_attn(h, h, h, mask)
            x = x + a if self.residual else a
            return x + self.ff(self.norm2(x))
        a = self.self_attn(x, x, x, mask)
        if self.norm_outside:
            x = x + self.norm1(a)
            return x + self.norm2(self.ff(x))
        x = self.norm1(x + a if self.residual else a)
        return self.norm2(x + self.ff(x))


class _EncoderLayerDefaultEps(ref.EncoderLayer):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False,
                 eps=1e-5):
        super().__init__(d_model, n_heads, d_ff, dropout, activation, norm_first, eps)
        self.norm1, self.norm2 = ref.LayerNorm(d_model), ref.LayerNorm(d_model)


ENCODER_LAYER = Exercise(
    name="EncoderLayer",
    chapter=CHAPTER,
    reference=ref.EncoderLayer,
    make_cases=_encoder_layer_cases,
    run=lambda cls, a: run_module(cls, a, "x", "mask"),
    mistakes=[
        Mistake("always pre-norm",
                "With norm_first=False (post-norm, the original paper) normalise after the "
                "residual sum: x = norm1(x + self_attn(x, x, x, mask)). You compute pre-norm.",
                mutant(_EncoderLayerMutant, pre_norm=True)),
        Mistake("always post-norm",
                "With norm_first=True (pre-norm) normalise the sub-layer's input and add the "
                "raw x: x = x + self_attn(h, h, h, mask) with h = norm1(x). You compute "
                "post-norm.",
                mutant(_EncoderLayerMutant, pre_norm=False)),
        Mistake("missing residual",
                "The attention sub-layer has no residual connection: add its input back "
                "(x + sublayer(x)) before (post-norm) or after (pre-norm) normalising.",
                mutant(_EncoderLayerMutant, residual=False)),
        Mistake("norm inside the residual",
                "You compute x + norm(sublayer(x)); post-norm is norm(x + sublayer(x)): "
                "normalise the sum.",
                mutant(_EncoderLayerMutant, norm_outside=True)),
        Mistake("mask not passed",
                "The mask does not reach the self-attention, so tokens attend to padding: "
                "pass it as self_attn(q, k, v, mask).",
                mutant(_EncoderLayerMutant, pass_mask=False)),
        Mistake("eps not passed to the norms",
                "The layer's eps does not reach its LayerNorms, which use their default: "
                "create them as LayerNorm(d_model, eps).", _EncoderLayerDefaultEps),
    ],
)

# --------------------------------------------------------------------------- Encoder


def _encoder_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name, norm_first, activation, batch, length, lengths=None, dtype=torch.float32):
        init = {"vocab_size": 11, "d_model": 16, "n_heads": 2, "d_ff": 24, "n_layers": 2,
                "max_len": 32, "activation": activation, "norm_first": norm_first}
        state = random_state(ref.Encoder(**init), g, dtype, scale=0.5)
        ids = torch.randint(0, 11, (batch, length), generator=g)
        mask = None if lengths is None else padding_mask(torch.tensor(lengths), length)
        return Case(name, {"init": init, STATE: state, "src_ids": ids, "mask": mask})

    return [
        case("post-norm, 2 layers, no mask", False, "relu", 2, 6),
        case("post-norm, padding mask, float64", False, "relu", 3, 7, [7, 3, 5], F64),
        case("pre-norm (final LayerNorm), gelu, padding mask", True, "gelu", 2, 5, [5, 2]),
    ]


class _EncoderMutant(ref.Encoder):
    """The reference encoder with one step left out or done wrong (a flag)."""

    scale_embedding = True
    pass_mask = True
    final_norm = True
    chain_layers = True
    norm_always = False  # a final norm after post-norm layers too

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.norm_always:
            self.norm = ref.LayerNorm(self.d_model)

    def forward(self, src_ids, mask=None):
        x = self.embed(src_ids) * (math.sqrt(self.d_model) if self.scale_embedding else 1.0)
        x = start = self.pos(x)
        for layer in self.layers:
            x = layer(x if self.chain_layers else start, mask if self.pass_mask else None)
        return self.norm(x) if (self.norm is not None and self.final_norm) else x


ENCODER = Exercise(
    name="Encoder",
    chapter=CHAPTER,
    reference=ref.Encoder,
    make_cases=_encoder_cases,
    run=lambda cls, a: run_module(cls, a, "src_ids", "mask"),
    mistakes=[
        Mistake("embedding not scaled",
                "Multiply the token embeddings by sqrt(d_model) before adding the positional "
                "encoding, as the original paper does.", mutant(_EncoderMutant, scale_embedding=False)),
        Mistake("mask not passed down",
                "The mask does not reach the layers: call layer(x, mask) for every layer.",
                mutant(_EncoderMutant, pass_mask=False)),
        Mistake("no final norm",
                "With pre-norm layers (norm_first=True) the stack ends with the final "
                "LayerNorm self.norm; apply it to the last layer's output.",
                mutant(_EncoderMutant, final_norm=False)),
        Mistake("layers not chained",
                "Every layer reads the embeddings; each layer must read the previous layer's "
                "output (x = layer(x, mask)).", mutant(_EncoderMutant, chain_layers=False)),
        Mistake("final norm after post-norm layers",
                "A post-norm stack (norm_first=False) already ends in a LayerNorm: its last "
                "layer's norm2. Create the final self.norm only when norm_first is True "
                "(self.norm = None otherwise).", mutant(_EncoderMutant, norm_always=True)),
    ],
)

register(LAYER_NORM, FEED_FORWARD, ENCODER_LAYER, ENCODER)
