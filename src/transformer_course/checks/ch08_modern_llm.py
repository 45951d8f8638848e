"""Chapter 08 (modern LLM): visible cases and the catalogue of known mistakes.

Behaviours the chapter states, and the case that exercises each:

RMSNorm
    ``x / sqrt(mean(x**2) + eps) * weight``, "inputs with a mean far from 0", "tiny
    no centring, eps inside the root        inputs (x 1e-3)", "large eps (0.5)"
    default eps 1e-6; weight ones at         "default eps (1e-6), weight as initialised"
    creation
    no F.rms_norm                            forbidden calls
SwiGLU
    ``down(silu(gate(x)) * up(x))``, names   every case (weights loaded by name)
repeat_kv
    each head repeated in place              every case; "n_rep 1", "n_rep 4
                                             (multi-query)"
GroupedQueryAttention
    rotary on q and k (not v), causal,       every case
    scale sqrt(Dh), repeat_kv order
    ``rope_base``, default 10000             "rope_base 100000"; "positions 0, 3, ...
                                             given", "n_kv_heads == n_heads" (default)
    ``positions``                            "positions 0, 3, ..., 15 given"
    n_kv_heads == n_heads, == 1              "... (plain multi-head)", "... (multi-query)"
    (the KV cache is graded by the chapter's tests, not by these cases)
LlamaBlock
    pre-norm, both residuals, a norm per      every case (every weight random, norms
    sublayer, names, eps and rope_base        included); "eps 0.5, rope_base 100"
    from the config
    positions passed to the attention        "positions 0, 3, ..., 15 given"
Llama
    embedding (unscaled), blocks, final      every case (every weight random)
    RMSNorm, head
    tied head when the config says so        the tied cases (lm_head.weight not loaded)
    untied head otherwise                    "tie_embeddings False"
    positions 0..L-1                         every case (rotary in the blocks)
    (the KV cache path is exercised by the chapter's generation cells and tests)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer_course import llama as ref
from transformer_course.attention import causal_mask as ref_causal_mask
from transformer_course.attention import scaled_dot_product_attention
from transformer_course.checks.exercise import Case, Exercise, Mistake
from transformer_course.checks.kit import STATE, build_module, mutant, randn, random_state, run_module
from transformer_course.checks.registry import register
from transformer_course.llama import LlamaConfig
from transformer_course.multi_head import merge_heads, split_heads
from transformer_course.positional import apply_rotary

CHAPTER = "08_modern_llm"


# --------------------------------------------------------------------------- RMSNorm


def _rms_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name, shape, eps, dtype=torch.float32, scale=1.0, shift=0.0):
        d = shape[-1]
        weight = 1.0 + 0.5 * randn(g, d, dtype=dtype)
        x = randn(g, *shape, dtype=dtype) * scale + shift
        return Case(name, {"init": {"d_model": d, "eps": eps}, STATE: {"weight": weight}, "x": x})

    return [
        case("(2, 5, 8), eps 1e-6", (2, 5, 8), 1e-6),
        case("float64 (3, 16), eps 1e-5", (3, 16), 1e-5, dtype=torch.float64),
        case("inputs with a mean far from 0 (x + 3)", (2, 4, 6), 1e-6, shift=3.0),
        case("tiny inputs (x 1e-3): eps matters", (2, 3, 8), 1e-6, scale=1e-3),
        case("large eps (0.5)", (4, 10), 0.5),
        Case("default eps (1e-6), weight as initialised (ones): tiny inputs (x 1e-3)",
             {"init": {"d_model": 6}, STATE: None, "x": randn(g, 2, 3, 6) * 1e-3}),
    ]


class _RMSNormMutant(ref.RMSNorm):
    """The reference RMSNorm with one step done wrong (a flag)."""

    center = False
    eps_outside = False
    use_weight = True
    root = True

    def forward(self, x: Tensor) -> Tensor:
        if self.center:
            x = x - x.mean(dim=-1, keepdim=True)
        ms = x.pow(2).mean(dim=-1, keepdim=True)
        if self.eps_outside:
            denom = ms.sqrt() + self.eps
        else:
            denom = (ms + self.eps).sqrt() if self.root else ms + self.eps
        out = x / denom
        return out * self.weight if self.use_weight else out


class _RMSNormRandomInit(ref.RMSNorm):
    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__(d_model, eps)
        self.weight = torch.nn.Parameter(torch.randn(d_model))


RMS_NORM = Exercise(
    name="RMSNorm",
    chapter=CHAPTER,
    reference=ref.RMSNorm,
    make_cases=_rms_cases,
    run=lambda cls, a: run_module(cls, a, "x"),
    forbidden={"F.rms_norm (nn.RMSNorm)": F.rms_norm},
    mistakes=[
        Mistake("mean subtracted",
                "You subtract the mean, which makes it LayerNorm (without a bias). RMSNorm "
                "only rescales: x / sqrt(mean(x**2) + eps) * weight, no centring.",
                mutant(_RMSNormMutant, center=True)),
        Mistake("eps outside the sqrt",
                "eps is added after the square root; it belongs inside: "
                "torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps). The difference shows "
                "for tiny inputs.", mutant(_RMSNormMutant, eps_outside=True)),
        Mistake("weight ignored",
                "The learned gain is never applied: multiply the normalised x by "
                "self.weight (a Parameter of shape (d_model,), initialised to ones).",
                mutant(_RMSNormMutant, use_weight=False)),
        Mistake("no square root",
                "You divide by the mean square; divide by its square root (the RMS).",
                mutant(_RMSNormMutant, root=False)),
        Mistake("weight not initialised to ones",
                "The gain starts random; RMSNorm starts as the plain rescaling: "
                "self.weight = nn.Parameter(torch.ones(d_model)).", _RMSNormRandomInit),
    ],
)

# --------------------------------------------------------------------------- SwiGLU


def _swiglu_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name, shape, d_ff, dtype=torch.float32):
        d = shape[-1]
        state = random_state(ref.SwiGLU(d, d_ff), g, dtype)
        x = randn(g, *shape, dtype=dtype)
        return Case(name, {"init": {"d_model": d, "d_ff": d_ff}, STATE: state, "x": x})

    return [
        case("(2, 5, 8), d_ff 16", (2, 5, 8), 16),
        case("float64 (3, 12), d_ff 20", (3, 12), 20, dtype=torch.float64),
        case("(1, 4, 6), d_ff 7", (1, 4, 6), 7),
    ]


class _SwiGLUMutant(ref.SwiGLU):
    """The reference SwiGLU with another gate activation, or gate and up swapped."""

    gate_activation = "silu"
    swap = False

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_proj(x), self.up_proj(x)
        if self.swap:
            gate, up = up, gate
        act = {"silu": F.silu, "relu": F.relu, "gelu": F.gelu, "sigmoid": torch.sigmoid}[self.gate_activation]
        return self.down_proj(act(gate) * up)


SWIGLU = Exercise(
    name="SwiGLU",
    chapter=CHAPTER,
    reference=ref.SwiGLU,
    make_cases=_swiglu_cases,
    run=lambda cls, a: run_module(cls, a, "x"),
    mistakes=[
        Mistake("gate and up swapped",
                "SiLU is applied to up_proj(x) and multiplies gate_proj(x); it is the other "
                "way round: silu(gate_proj(x)) * up_proj(x). The names matter because real "
                "weights are loaded by name.", mutant(_SwiGLUMutant, swap=True)),
        Mistake("ReLU instead of SiLU",
                "The gate uses ReLU; SwiGLU uses SiLU (swish): F.silu(x) = x * sigmoid(x).",
                mutant(_SwiGLUMutant, gate_activation="relu")),
        Mistake("GELU instead of SiLU",
                "The gate uses GELU (that is GeGLU); SwiGLU uses SiLU: F.silu.",
                mutant(_SwiGLUMutant, gate_activation="gelu")),
        Mistake("sigmoid instead of SiLU",
                "The gate uses sigmoid (the original GLU); SwiGLU uses SiLU, x * sigmoid(x).",
                mutant(_SwiGLUMutant, gate_activation="sigmoid")),
    ],
)

# --------------------------------------------------------------------------- repeat_kv


def _repeat_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [
        Case("(2, 2, 5, 4), n_rep 3", {"x": randn(g, 2, 2, 5, 4), "n_rep": 3}),
        Case("float64 (1, 3, 4, 2), n_rep 2",
             {"x": randn(g, 1, 3, 4, 2, dtype=torch.float64), "n_rep": 2}),
        Case("(2, 4, 3, 2), n_rep 1 (plain multi-head)", {"x": randn(g, 2, 4, 3, 2), "n_rep": 1}),
        Case("(1, 1, 3, 4), n_rep 4 (multi-query)", {"x": randn(g, 1, 1, 3, 4), "n_rep": 4}),
    ]


REPEAT_KV = Exercise(
    name="repeat_kv",
    chapter=CHAPTER,
    reference=ref.repeat_kv,
    make_cases=_repeat_cases,
    run=lambda f, a: f(a["x"], a["n_rep"]),
    mistakes=[
        Mistake("tiled",
                "The heads are tiled ([k0, k1, k0, k1]) instead of each repeated in place "
                "([k0, k0, k1, k1]); query heads 0..n_rep-1 must share KV head 0. Insert a "
                "new dim after the head dim and expand it, or use "
                "x.repeat_interleave(n_rep, dim=1).",
                lambda x, n_rep: x.repeat(1, n_rep, 1, 1)),
        Mistake("repeated along the sequence",
                "You repeat along the sequence (dim 2); repeat the heads (dim 1).",
                lambda x, n_rep: x.repeat_interleave(n_rep, dim=2)),
        Mistake("repeated along the batch",
                "You repeat along the batch (dim 0); repeat the heads (dim 1).",
                lambda x, n_rep: x.repeat_interleave(n_rep, dim=0)),
    ],
)

# --------------------------------------------------------------------------- GQA


def _gqa_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name, d_model, n_heads, n_kv, shape, rope_base=None, dtype=torch.float32,
             positions=None):
        init = {"d_model": d_model, "n_heads": n_heads, "n_kv_heads": n_kv}
        if rope_base is not None:  # None: the default, 10000
            init["rope_base"] = rope_base
        state = random_state(ref.GroupedQueryAttention(**init), g, dtype)
        # Larger queries and keys make the attention sharper, so mistakes show clearly.
        state["q_proj.weight"] *= 3
        state["k_proj.weight"] *= 3
        return Case(name, {"init": init, STATE: state, "x": randn(g, *shape, dtype=dtype),
                           "positions": positions})

    return [
        case("d_model 16, 4 heads, 2 KV heads, x (2, 6, 16)", 16, 4, 2, (2, 6, 16),
             rope_base=10000.0),
        case("float64, 6 heads, 3 KV heads, rope_base 100000", 24, 6, 3, (1, 7, 24),
             rope_base=100000.0, dtype=torch.float64),
        # Rotary scores depend on offsets only: spaced positions, unlike shifted ones, show.
        case("positions 0, 3, ..., 15 given", 16, 4, 2, (2, 6, 16), positions=3 * torch.arange(6)),
        case("n_kv_heads == n_heads (plain multi-head)", 16, 2, 2, (2, 5, 16)),
        case("n_kv_heads 1 (multi-query)", 16, 4, 1, (1, 5, 16), rope_base=10000.0),
    ]


def _gqa_run(cls, a):
    # Graded through forward(x, positions), the interface the chapter fixes; the KV cache
    # is an optional extra that the chapter's tests cover.
    module = build_module(cls, a["init"], a[STATE])
    return module(a["x"], a["positions"])


class _GQAMutant(ref.GroupedQueryAttention):
    """The reference attention (no cache) with one step done wrong (a flag)."""

    rotary = True
    rotary_v = False
    causal = True
    tile = False
    scale_d_model = False
    default_base = False
    ignore_positions = False

    def forward(self, x, positions=None):
        base = 10000.0 if self.default_base else self.rope_base
        if self.ignore_positions:
            positions = None
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(x), self.n_kv_heads)
        v = split_heads(self.v_proj(x), self.n_kv_heads)
        if self.rotary:
            q, k = apply_rotary(q, positions, base=base), apply_rotary(k, positions, base=base)
        if self.rotary_v:
            v = apply_rotary(v, positions, base=base)
        n_rep = self.n_heads // self.n_kv_heads
        if self.tile:
            k, v = k.repeat(1, n_rep, 1, 1), v.repeat(1, n_rep, 1, 1)
        else:
            k, v = ref.repeat_kv(k, n_rep), ref.repeat_kv(v, n_rep)
        if self.scale_d_model:  # the course's attention divides by sqrt(Dh); make it sqrt(D)
            q = q * math.sqrt(self.d_head / (self.n_heads * self.d_head))
        mask = ref_causal_mask(q.size(-2)) if self.causal else None
        out, _ = scaled_dot_product_attention(q, k, v, mask)
        return self.o_proj(merge_heads(out))


GQA = Exercise(
    name="GroupedQueryAttention",
    chapter=CHAPTER,
    reference=ref.GroupedQueryAttention,
    make_cases=_gqa_cases,
    run=_gqa_run,
    rtol=1e-4,
    atol=1e-5,
    mistakes=[
        Mistake("no rotary embedding",
                "Queries and keys carry no position: apply apply_rotary(q, positions, "
                "base=self.rope_base) and the same to k, after splitting the heads.",
                mutant(_GQAMutant, rotary=False)),
        Mistake("rotary on values",
                "You rotate the values too. Rotary encodes positions in the q.k dot "
                "product only; values are left as they are.",
                mutant(_GQAMutant, rotary_v=True)),
        Mistake("no causal mask",
                "Every token attends to later tokens: pass a causal mask (True on and below "
                "the diagonal) to the attention.", mutant(_GQAMutant, causal=False)),
        Mistake("heads grouped in the wrong order",
                "The KV heads are tiled ([k0, k1, k0, k1]) so query head 1 reads KV head 1; "
                "use repeat_kv, which repeats each KV head in place ([k0, k0, k1, k1]).",
                mutant(_GQAMutant, tile=True)),
        Mistake("scaled by sqrt(d_model)",
                "Scores are divided by sqrt(d_model); the scale is sqrt(head size), "
                "d_model // n_heads (scaled_dot_product_attention on the split heads does it).",
                mutant(_GQAMutant, scale_d_model=True)),
        Mistake("rope_base ignored",
                "The rotary embedding uses the default base 10000; pass base=self.rope_base.",
                mutant(_GQAMutant, default_base=True)),
        Mistake("positions ignored",
                "The rotary embedding always uses positions 0..L-1: pass the positions "
                "forward was given, apply_rotary(q, positions, base=self.rope_base) (and the "
                "same for k).", mutant(_GQAMutant, ignore_positions=True)),
    ],
)

# --------------------------------------------------------------------------- LlamaBlock

_CONFIG = {"vocab_size": 11, "d_model": 16, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2,
           "d_ff": 24, "rope_base": 10000.0, "eps": 1e-5, "tie_embeddings": True}


def _weights(module: torch.nn.Module, g: torch.Generator, dtype: torch.dtype) -> dict[str, Tensor]:
    """Random weights for every parameter, norms' gains included, so that a part left
    out or applied in the wrong place changes the output."""
    state = random_state(module, g, dtype, gain=0.5)
    for name in state:
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            state[name] *= 3  # sharper attention: a wrong position shows clearly
    return state


def _block_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    cases = []
    for name, config, shape, dtype, positions in [
        ("d_model 16, 4 heads, 2 KV heads, x (2, 6, 16)", _CONFIG, (2, 6, 16), torch.float32, None),
        ("float64, eps 0.5, rope_base 100, 1 KV head, x (1, 7, 16)",
         {**_CONFIG, "eps": 0.5, "rope_base": 100.0, "n_kv_heads": 1}, (1, 7, 16),
         torch.float64, None),
        # Rotary scores depend on offsets only: spaced positions, unlike shifted ones, show.
        ("positions 0, 3, ..., 15 given, x (2, 6, 16)", _CONFIG, (2, 6, 16), torch.float32,
         3 * torch.arange(6)),
    ]:
        state = _weights(ref.LlamaBlock(LlamaConfig(**config)), g, dtype)
        # Inputs far from unit RMS, so that a norm on the wrong branch changes the output.
        x = randn(g, *shape, dtype=dtype) * 3
        cases.append(Case(name, {"config": config, STATE: state, "x": x, "positions": positions}))
    return cases


def _run_block(cls, a):
    block = build_module(cls, {"config": LlamaConfig(**a["config"])}, a[STATE])
    return block(a["x"], a["positions"])


class _BlockMutant(ref.LlamaBlock):
    """The reference block with one step done wrong (a flag)."""

    post_norm = False
    attn_residual = True
    mlp_residual = True
    normed_stream = False  # the residual carries the normalized copy
    one_norm = False  # input_layernorm before both sublayers
    pass_positions = True

    def forward(self, x, positions=None, cache=None):
        pos = positions if self.pass_positions else None
        norm2 = self.input_layernorm if self.one_norm else self.post_attention_layernorm
        if self.post_norm:
            x = self.input_layernorm(x + self.self_attn(x, pos))
            return norm2(x + self.mlp(x))
        h = self.input_layernorm(x)
        if self.normed_stream:
            x = h
        x = x + self.self_attn(h, pos) if self.attn_residual else self.self_attn(h, pos)
        h = norm2(x)
        return x + self.mlp(h) if self.mlp_residual else self.mlp(h)


LLAMA_BLOCK = Exercise(
    name="LlamaBlock",
    chapter=CHAPTER,
    reference=ref.LlamaBlock,
    make_cases=_block_cases,
    run=_run_block,
    rtol=1e-4,
    atol=1e-5,
    mistakes=[
        Mistake("post-norm",
                "The block normalizes after the residual add (post-norm, as chapter 4's "
                "original layer); a Llama block is pre-norm: x = x + self_attn("
                "input_layernorm(x), positions, cache), then x = x + mlp("
                "post_attention_layernorm(x)).", mutant(_BlockMutant, post_norm=True)),
        Mistake("attention residual missing",
                "The attention's output replaces the stream instead of being added to it: "
                "x = x + self_attn(input_layernorm(x), positions, cache).",
                mutant(_BlockMutant, attn_residual=False)),
        Mistake("feed-forward residual missing",
                "The feed-forward output replaces the stream instead of being added to it: "
                "return x + mlp(post_attention_layernorm(x)).",
                mutant(_BlockMutant, mlp_residual=False)),
        Mistake("norm on the residual stream",
                "The residual stream itself is normalized (x = norm(x), then x + attn(x)); "
                "only the sublayer's input is: x + self_attn(input_layernorm(x), ...), so the "
                "stream keeps its scale.", mutant(_BlockMutant, normed_stream=True)),
        Mistake("one norm for both sublayers",
                "input_layernorm is applied before the feed-forward too; each sublayer has "
                "its own norm and gain: post_attention_layernorm before mlp.",
                mutant(_BlockMutant, one_norm=True)),
        Mistake("positions not passed",
                "The attention is called without positions, so the rotary embedding uses "
                "0..L-1 whatever the block was given: self_attn(h, positions, cache).",
                mutant(_BlockMutant, pass_positions=False)),
    ],
)

# --------------------------------------------------------------------------- Llama


def _llama_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    cases = []
    for name, config, batch, length, dtype in [
        ("2 layers, tied head, idx (2, 7)", _CONFIG, 2, 7, torch.float32),
        ("1 layer, tied head, float64, idx (1, 9)", {**_CONFIG, "n_layers": 1}, 1, 9,
         torch.float64),
        ("3 layers, tie_embeddings False, idx (3, 5)",
         {**_CONFIG, "n_layers": 3, "tie_embeddings": False}, 3, 5, torch.float32),
    ]:
        state = _weights(ref.Llama(LlamaConfig(**config)), g, dtype)
        if config["tie_embeddings"]:
            # Only embed_tokens is given: a tied head uses it, an untied one its own weights.
            state.pop("lm_head.weight")
        idx = torch.randint(config["vocab_size"], (batch, length), generator=g)
        cases.append(Case(name, {"config": config, STATE: state, "idx": idx}))
    return cases


def _run_llama(cls, a):
    model = build_module(cls, {"config": LlamaConfig(**a["config"])}, a[STATE])
    return model(a["idx"])


class _LlamaMutant(ref.Llama):
    """The reference model with one step done wrong (a flag)."""

    final_norm = True
    scale_embedding = False
    always_tie = False
    never_tie = False

    def __init__(self, config):
        super().__init__(config)
        if self.always_tie:
            self.lm_head.weight = self.embed_tokens.weight
        if self.never_tie:
            self.lm_head.weight = torch.nn.Parameter(self.embed_tokens.weight.detach() * 0.5 + 0.01)

    def forward(self, idx, cache=None):
        x = self.embed_tokens(idx)
        if self.scale_embedding:
            x = x * math.sqrt(self.config.d_model)
        positions = torch.arange(idx.size(1))
        for layer in self.layers:
            x = layer(x, positions)
        return self.lm_head(self.norm(x) if self.final_norm else x)


LLAMA = Exercise(
    name="Llama",
    chapter=CHAPTER,
    reference=ref.Llama,
    make_cases=_llama_cases,
    run=_run_llama,
    rtol=1e-4,
    atol=1e-5,
    mistakes=[
        Mistake("final norm missing",
                "self.norm is never applied: normalize the last block's output before "
                "lm_head.", mutant(_LlamaMutant, final_norm=False)),
        Mistake("head not tied",
                "With config.tie_embeddings the head must share the embedding's matrix: "
                "self.lm_head.weight = self.embed_tokens.weight (the checks load only "
                "embed_tokens.weight then).", mutant(_LlamaMutant, never_tie=True)),
        Mistake("head always tied",
                "The head is tied although config.tie_embeddings is False: tie it only "
                "when the config says so (then lm_head keeps weights of its own).",
                mutant(_LlamaMutant, always_tie=True)),
        Mistake("embedding scaled by sqrt(d_model)",
                "The embedding is multiplied by sqrt(d_model), as chapter 4's encoder does; "
                "Llama feeds embed_tokens(idx) to the first block as it is.",
                mutant(_LlamaMutant, scale_embedding=True)),
    ],
)

register(RMS_NORM, SWIGLU, REPEAT_KV, GQA, LLAMA_BLOCK, LLAMA)
