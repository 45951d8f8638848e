"""Chapter 06 (a decoder-only LLM), its model and its sampling: visible cases and the
catalogue of known mistakes.

Behaviours the chapter states, and the case that exercises each:

GPTBlock
    pre-norm, causal (a changed last token   every case (three outputs)
    changes no earlier output), the cache
    gives the same output
GPT
    tied head, final LayerNorm, learned      every case (only tok_emb.weight loaded)
    positions; cache positions continue      every case (through the cache)
    ``d_ff`` default 4 * d_model             "2 layers ...", "3 layers ..."
next_token_loss
    shift by one, mean over B * (L - 1)      every case; "one prediction per row"
sample_next_token
    temperature 0 greedy; top_k=1 exact      "greedy (temperature=0)", "top_k=1 (greedy)"
    temperature before the softmax           "temperature=0.5", "temperature=2.0"
    top-k keeps k; k >= V keeps all          "top_k=3", "top_k=20 > V keeps every token"
    top-p keeps the crossing token and the   "top_p=0.6", "top_p=0.02: the most likely
    most likely one; top-k then top-p        token is always kept", "top_k=5 then
                                             top_p=0.7, float64"
generate
    prompt first, last position sampled      every case
    crops the context to max_len             "greedy, 20 new tokens: the context
                                             outgrows max_len=16 ..."
    settings passed on; the cache changes    the sampled cases (with and without the
    no token                                 cache, the student's own sampler)
    (the ValueError for use_cache past max_len is given in the starter code)
    generate runs on a stand-in model defined here (PrefixLM), so that its check needs
    neither the student's GPT nor the course's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer_course import gpt as ref
from transformer_course.attention import causal_mask
from transformer_course.checks.exercise import Case, Exercise, Mistake
from transformer_course.checks.judging import compare_tensors
from transformer_course.checks.kit import STATE, build_module, mutant, randn, random_state
from transformer_course.checks.registry import register
from transformer_course.checks.stats import frequency_problem

CHAPTER = "06_llm"

# --------------------------------------------------------------------------- GPTBlock

_BLOCK = {"d_model": 16, "n_heads": 4, "d_ff": 32}


def _weights(module: torch.nn.Module, g: torch.Generator, dtype: torch.dtype) -> dict[str, Tensor]:
    """Random weights for every parameter, LayerNorms included, so that no part of a
    module can be left out without changing the output."""
    return random_state(module, g, dtype, scale=0.5, fan_in=False, gain=0.2, bias=0.2, embedding=None)


def _block_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    cases = []
    for name, batch, length, dtype in [("(2, 6, 16)", 2, 6, torch.float32),
                                        ("(1, 9, 16), float64", 1, 9, torch.float64),
                                        ("(3, 4, 16)", 3, 4, torch.float32)]:
        state = _weights(ref.GPTBlock(**_BLOCK), g, dtype)
        x = randn(g, batch, length, 16, dtype=dtype)
        changed = x.clone()
        changed[:, -1] = randn(g, batch, 16, dtype=dtype) * 3
        cases.append(Case(f"x {name}; then the last token changed; then cached in two chunks",
                          {"init": _BLOCK, STATE: state, "x": x, "x_changed": changed}))
    return cases


def _run_block(cls: Any, a: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
    block = build_module(cls, a["init"], a[STATE])
    x = a["x"]
    out = block(x)
    # Causality: changing the last token must leave every earlier output as it was.
    future_change = block(a["x_changed"])[:, :-1] - out[:, :-1]
    cache = ref.KVCache()
    split = x.size(1) // 2
    cached = torch.cat([block(x[:, :split], cache=cache), block(x[:, split:], cache=cache)], dim=1)
    return out, future_change, cached


class _MutantBlock(ref.GPTBlock):
    """The reference block with one mistake (a flag); the cached path stays the reference's."""

    post_norm = False
    mask = "causal"  # or "next" (sees the next token) or None

    def forward(self, x, cache=None):
        h = x if self.post_norm else self.ln1(x)
        if cache is None:
            length = x.size(1)
            mask = {"causal": causal_mask(length), None: None,
                    "next": torch.ones(length, length, dtype=torch.bool).tril(1)}[self.mask]
            x = x + self.attn(h, h, h, mask)
        else:
            x = x + self._attend_with_cache(h, cache)
        if self.post_norm:
            x = self.ln1(x)
            return self.ln2(x + self.mlp(x))
        return x + self.mlp(self.ln2(x))


class _ReluBlock(ref.GPTBlock):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0):
        super().__init__(d_model, n_heads, d_ff, dropout)
        self.mlp.activation = "relu"


GPT_BLOCK = Exercise(
    name="GPTBlock",
    chapter=CHAPTER,
    reference=ref.GPTBlock,
    make_cases=_block_cases,
    run=_run_block,
    outputs=("output", "future_change", "cached_output"),
    mistakes=[
        Mistake("post-norm",
                "The block is post-norm (norm after the residual add); a GPT block is pre-norm: "
                "x = x + attn(ln1(x)), then x = x + mlp(ln2(x)).", mutant(_MutantBlock, post_norm=True)),
        Mistake("causal mask sees the next token",
                "The causal mask lets a position see the future: changing a later token "
                "changed earlier outputs. Use causal_mask(L): True on and below the diagonal.",
                mutant(_MutantBlock, mask="next")),
        Mistake("no causal mask",
                "The attention has no causal mask, so every position sees the future "
                "(changing a later token changed earlier outputs): pass causal_mask(L).",
                mutant(_MutantBlock, mask=None)),
        Mistake("relu",
                "The feed-forward network uses ReLU; GPT uses GELU: "
                "FeedForward(d_model, d_ff, dropout, activation='gelu').", _ReluBlock),
    ],
)

# --------------------------------------------------------------------------- GPT

_GPT = {"vocab_size": 13, "max_len": 12, "d_model": 16, "n_heads": 2, "n_layers": 2}


def _gpt_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    cases = []
    for name, init, batch, length, dtype in [
        ("2 layers, idx (2, 7)", _GPT, 2, 7, torch.float32),
        ("1 layer, d_ff=24, idx (1, 12) = max_len, float64",
         {**_GPT, "n_layers": 1, "d_ff": 24}, 1, 12, torch.float64),
        ("3 layers, idx (3, 5)", {**_GPT, "n_layers": 3}, 3, 5, torch.float32),
    ]:
        state = _weights(ref.GPT(**init), g, dtype)
        # Only tok_emb is given: a tied head uses it, an untied one keeps its own weights.
        state.pop("lm_head.weight")
        idx = torch.randint(init["vocab_size"], (batch, length), generator=g)
        cases.append(Case(f"{name}; then fed through the cache 3 tokens, then 1 at a time",
                          {"init": init, STATE: state, "idx": idx}))
    return cases


def _run_gpt(cls: Any, a: dict[str, Any]) -> tuple[Tensor, Tensor]:
    model = build_module(cls, a["init"], a[STATE])
    idx = a["idx"]
    logits = model(idx)
    cache = model.new_cache()
    pieces = [model(idx[:, :3], cache=cache)]
    pieces += [model(idx[:, t : t + 1], cache=cache) for t in range(3, idx.size(1))]
    return logits, torch.cat(pieces, dim=1)


class _UntiedGPT(ref.GPT):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lm_head.weight = torch.nn.Parameter(self.tok_emb.weight.detach().clone() * 0.5 + 0.01)


class _GPTMutant(ref.GPT):
    """The reference GPT with one step left out or done wrong (a flag)."""

    positions = True
    restart_positions = False  # positions from 0 even after the cached tokens
    final_norm = True

    def forward(self, idx, cache=None):
        start = 0 if cache is None or self.restart_positions else len(cache[0])
        x = self.tok_emb(idx)
        if self.positions:
            x = x + self.pos_emb(torch.arange(start, start + idx.size(1)))
        for i, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache[i])
        return self.lm_head(self.ln_f(x) if self.final_norm else x)


GPT = Exercise(
    name="GPT",
    chapter=CHAPTER,
    reference=ref.GPT,
    make_cases=_gpt_cases,
    run=_run_gpt,
    outputs=("logits", "cached_logits"),
    mistakes=[
        Mistake("head not tied",
                "The output head is not tied to the token embedding: after creating lm_head, "
                "set self.lm_head.weight = self.tok_emb.weight (the checks load only "
                "tok_emb.weight).", _UntiedGPT),
        Mistake("cache forgets positions",
                "The KV cache forgets positions: tokens fed after the cached ones get position "
                "embeddings from 0 again. Start the positions at len(cache[0]).",
                mutant(_GPTMutant, restart_positions=True)),
        Mistake("no final LayerNorm",
                "ln_f is never applied: normalise the last block's output before lm_head.",
                mutant(_GPTMutant, final_norm=False)),
        Mistake("no position embedding",
                "The position embedding is missing: add pos_emb(positions) to tok_emb(idx).",
                mutant(_GPTMutant, positions=False)),
    ],
)

# --------------------------------------------------------------------------- next_token_loss


def _loss_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    return [
        Case("logits (2, 5, 7)", {"logits": randn(g, 2, 5, 7) * 2,
                                  "tokens": torch.randint(7, (2, 5), generator=g)}),
        Case("logits (1, 9, 4), float64", {"logits": randn(g, 1, 9, 4, dtype=torch.float64) * 2,
                                           "tokens": torch.randint(4, (1, 9), generator=g)}),
        Case("logits (3, 2, 11): one prediction per row",
             {"logits": randn(g, 3, 2, 11) * 2, "tokens": torch.randint(11, (3, 2), generator=g)}),
    ]


def _ce(logits: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction)


NEXT_TOKEN_LOSS = Exercise(
    name="next_token_loss",
    chapter=CHAPTER,
    reference=ref.next_token_loss,
    make_cases=_loss_cases,
    run=lambda f, a: f(a["logits"], a["tokens"]),
    outputs=("loss",),
    mistakes=[
        Mistake("no shift",
                "You predict `tokens` from `logits` at the same position (no shift): the model "
                "would learn to copy its input. Predict tokens[:, 1:] from logits[:, :-1].",
                lambda logits, tokens: _ce(logits, tokens)),
        Mistake("shifted the wrong way",
                "The shift goes the wrong way: predict tokens[:, 1:] from logits[:, :-1].",
                lambda logits, tokens: _ce(logits[:, 1:], tokens[:, :-1])),
        Mistake("sum instead of mean",
                "The loss is summed; take the mean over all B * (L - 1) predictions.",
                lambda logits, tokens: _ce(logits[:, :-1], tokens[:, 1:], "sum")),
    ],
)

# --------------------------------------------------------------------------- sample_next_token
#
# A sampler is judged by what it draws, not by how (prepare.prepare records the
# distribution the reference hands to torch.multinomial; stats.frequency_problem counts).
# Each case has _ROWS rows of each of 4 distributions over 12 tokens, so at most 48 count
# tests per case, each with a two-sided tail of at most stats.ALPHA = 1e-10 under a
# correct sampler: the union bound over a grading run (11 visible and 11 hidden cases)
# is below 2.2e-8. A catalogued mistake passes a run only if every test passes, so its
# pass probability is at most that of its least likely test: for a token it keeps or
# drops wrongly, (1 - q)^2048 or 0; for a wrong temperature, the binomial mass of the
# acceptance interval under its own probabilities. scripts/check_margins.py computes
# both exactly (stats.false_fail_probability, stats.pass_probability) and
# tests/test_alternatives.py requires both below 1e-6.

_ROWS = 2048


def _sample_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    base = randn(g, 4, 12, dtype=torch.float64) * 1.5
    logits = base.repeat(_ROWS, 1).to(torch.float32)
    settings = [
        ("greedy (temperature=0)", {"temperature": 0.0}),
        ("temperature=1", {"temperature": 1.0}),
        ("temperature=0.5", {"temperature": 0.5}),
        ("temperature=2.0", {"temperature": 2.0}),
        ("top_k=3", {"temperature": 1.0, "top_k": 3}),
        ("top_k=1 (greedy)", {"temperature": 1.0, "top_k": 1}),
        ("top_k=20 > V keeps every token", {"temperature": 1.0, "top_k": 20}),
        ("top_p=0.6", {"temperature": 1.0, "top_p": 0.6}),
        ("top_p=0.02: the most likely token is always kept", {"temperature": 1.0, "top_p": 0.02}),
        ("top_p=0.9 with temperature=0.8", {"temperature": 0.8, "top_p": 0.9}),
        ("top_k=5 then top_p=0.7, float64", {"temperature": 1.0, "top_k": 5, "top_p": 0.7}),
    ]
    cases = []
    for name, kwargs in settings:
        x = logits.double() if "float64" in name else logits
        cases.append(Case(f"{name}, logits ({x.size(0)}, 12), generator seeded {seed}",
                          {"logits": x, "seed": seed, **kwargs}))
    return cases


def _run_sample(f: Any, a: dict[str, Any]) -> Tensor:
    generator = torch.Generator().manual_seed(a["seed"])
    return f(a["logits"], temperature=a["temperature"], top_k=a.get("top_k"),
             top_p=a.get("top_p"), generator=generator)


def _compare_sample(data: dict[str, Tensor], actual: dict[str, Tensor]) -> str | None:
    """Greedy: the exact tokens. Sampling: the tokens' frequencies (stats module)."""
    if "probs" not in data:
        return compare_tensors(data["expected/tokens"], actual["tokens"], 0.0, 0.0)
    return frequency_problem(actual["tokens"], data["probs"])


def _sampler(logits, temperature=1.0, top_k=None, top_p=None, generator=None, *,
             temperature_after_softmax=False, k_shift=0, drop_crossing=False,
             greedy_at_one=False, clamp_k=True, keep_first=True):
    if temperature == 0 or (greedy_at_one and temperature == 1):
        return logits.argmax(dim=-1)
    if not temperature_after_softmax:
        logits = logits / temperature
    if top_k is not None:
        k = max(1, top_k + k_shift)
        kth = logits.topk(min(k, logits.size(-1)) if clamp_k else k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        cumulative = probs.cumsum(dim=-1)
        drop_sorted = cumulative > top_p if drop_crossing else cumulative - probs >= top_p
        drop_sorted[..., 0] &= not keep_first
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    if temperature_after_softmax:
        probs = probs / temperature
    return torch.multinomial(probs, num_samples=1, generator=generator)[:, 0]


SAMPLE = Exercise(
    name="sample_next_token",
    chapter=CHAPTER,
    reference=ref.sample_next_token,
    make_cases=_sample_cases,
    run=_run_sample,
    outputs=("tokens",),
    compare=_compare_sample,
    mistakes=[
        Mistake("temperature after softmax",
                "Temperature is applied after the softmax (dividing probabilities by T changes "
                "nothing once they are renormalised); divide the logits by T before it.",
                mutant(_sampler, temperature_after_softmax=True)),
        Mistake("top-k keeps k+1",
                "top-k keeps k+1 tokens; keep exactly the k largest logits "
                "(logits.topk(k).values[..., -1:] is the smallest one kept).",
                mutant(_sampler, k_shift=1)),
        Mistake("top-k keeps k-1",
                "top-k keeps k-1 tokens; keep exactly the k largest logits "
                "(logits.topk(k).values[..., -1:] is the smallest one kept).",
                mutant(_sampler, k_shift=-1)),
        Mistake("top-k larger than the vocabulary",
                "top_k larger than the vocabulary raises; it keeps every token "
                "(use min(top_k, logits.size(-1))).", mutant(_sampler, clamp_k=False)),
        Mistake("top-p drops the crossing token",
                "top-p drops the token that crosses the threshold; keep a token when the "
                "probabilities before it (sorted, descending) sum to less than top_p.",
                mutant(_sampler, drop_crossing=True)),
        Mistake("top-p can drop every token",
                "When the most likely token alone has more than top_p, your top-p keeps "
                "nothing (NaN probabilities); the most likely token is always kept, since "
                "no tokens come before it.", mutant(_sampler, keep_first=False,
                                                          drop_crossing=True)),
        Mistake("greedy when temperature is 1",
                "You return the argmax when temperature == 1; only temperature == 0 is greedy, "
                "temperature 1 samples from the model's own distribution.",
                mutant(_sampler, greedy_at_one=True)),
    ],
)

# --------------------------------------------------------------------------- generate

_GEN = {"vocab_size": 11, "max_len": 16, "d_model": 16}


class PrefixLM(torch.nn.Module):
    """A stand-in for a trained GPT with the same interface (``max_len``, ``new_cache``,
    ``forward(idx, cache=None)``), so that checking ``generate`` needs no other exercise.

    The logits at position ``t`` are ``head(tanh(mean of tok_emb over tokens <= t +
    pos_emb(t)))``: causal, they depend on every earlier token and on the absolute
    position, and positions past ``max_len`` raise an IndexError (as GPT's own do). Its
    cache is a list ``[sum of the embeddings seen, number of positions seen]``.
    """

    def __init__(self, vocab_size: int, max_len: int, d_model: int):
        super().__init__()
        self.max_len = max_len
        self.tok_emb = torch.nn.Embedding(vocab_size, d_model)
        self.pos_emb = torch.nn.Embedding(max_len, d_model)
        self.head = torch.nn.Linear(d_model, vocab_size, bias=False)

    def new_cache(self) -> list:
        """An empty cache: nothing seen yet."""
        return [0.0, 0]

    def forward(self, idx: Tensor, cache: list | None = None) -> Tensor:
        """``idx (B, L)`` -> logits ``(B, L, V)``; with a cache, ``idx`` follows the tokens
        already fed into it."""
        seen_sum, seen = (0.0, 0) if cache is None else cache
        x = self.tok_emb(idx)  # (B, L, D)
        sums = seen_sum + x.cumsum(dim=1)
        counts = torch.arange(seen + 1, seen + idx.size(1) + 1, dtype=x.dtype)[:, None]
        if cache is not None:
            cache[:] = [sums[:, -1:], seen + idx.size(1)]
        positions = torch.arange(seen, seen + idx.size(1))
        if positions[-1] >= self.max_len:
            raise IndexError(f"position {int(positions[-1])} is past max_len={self.max_len}")
        return self.head(torch.tanh(sums / counts + self.pos_emb(positions)))
_PROMPT_ROWS = 128  # copies of each prompt in a sampled case: the first new token is counted


def _generate_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    state = random_state(PrefixLM(**_GEN), g, torch.float64, embedding=1.0, scale=2.0)
    prompt = torch.randint(_GEN["vocab_size"], (3, 4), generator=g)
    many = prompt.repeat(_PROMPT_ROWS, 1)
    settings = [
        ("greedy, 8 new tokens", prompt, {"max_new_tokens": 8, "temperature": 0.0}),
        ("greedy, 20 new tokens: the context outgrows max_len=16 and is cropped; the cache "
         "stops at 13", prompt, {"max_new_tokens": 20, "temperature": 0.0, "cached_new_tokens": 13}),
        ("temperature=1, 12 new tokens (fills max_len)", many,
         {"max_new_tokens": 12, "temperature": 1.0}),
        ("temperature=0.8, top_k=4, 6 new tokens", many,
         {"max_new_tokens": 6, "temperature": 0.8, "top_k": 4}),
        ("top_p=0.8, 1 new token", many, {"max_new_tokens": 1, "temperature": 1.0, "top_p": 0.8}),
    ]
    return [Case(f"{name}; prompt {tuple(idx.shape)}; with and without the cache",
                 {"init": _GEN, STATE: state, "idx": idx, "seed": seed, **kwargs})
            for name, idx, kwargs in settings]


def _run_generate(f: Any, a: dict[str, Any]) -> tuple[Tensor, Tensor]:
    model = build_module(PrefixLM, a["init"], a[STATE])
    outputs = []
    for use_cache in (False, True):
        new = a.get("cached_new_tokens", a["max_new_tokens"]) if use_cache else a["max_new_tokens"]
        outputs.append(f(model, a["idx"], new, temperature=a["temperature"],
                         top_k=a.get("top_k"), top_p=a.get("top_p"),
                         generator=torch.Generator().manual_seed(a["seed"]), use_cache=use_cache))
    return tuple(outputs)


def _compare_generate(data: dict[str, Tensor], actual: dict[str, Tensor]) -> str | None:
    """The prompt comes back first; the cache changes no token (same seed, so the cached
    run is a prefix of the other); greedy runs give the exact tokens, sampled ones a
    first new token with the right distribution (stats module)."""
    want, want_cached = data["expected/tokens"], data["expected/cached_tokens"]
    tokens, cached = actual["tokens"], actual["cached_tokens"]
    for name, got, expected in (("tokens", tokens, want), ("cached_tokens", cached, want_cached)):
        if got.shape != expected.shape or got.dtype != expected.dtype:
            return f"{name}: {compare_tensors(expected, got, 0.0, 0.0)}"
    prompt = data["args/idx"]
    length = prompt.size(1) if torch.equal(want[:, : prompt.size(1)], prompt) else 0
    if not torch.equal(tokens[:, :length], prompt[:, :length]):
        return "tokens: the result must start with the prompt, unchanged"
    consistent = torch.equal(want_cached, want[:, : want_cached.size(1)])
    if consistent and not torch.equal(cached, tokens[:, : cached.size(1)]):
        differ = (cached != tokens[:, : cached.size(1)]).nonzero()[0].tolist()
        return (f"with use_cache=True the tokens differ from those without it (first at "
                f"{tuple(differ)}), with the same seed; the cache must change no token")
    if "probs" not in data:
        for name, got, expected in (("tokens", tokens, want), ("cached_tokens", cached, want_cached)):
            problem = compare_tensors(expected, got, 0.0, 0.0)
            if problem:
                return f"{name}: {problem}"
        return None
    vocab = data["probs"].size(-1)
    new = tokens[:, length:]
    if ((new < 0) | (new >= vocab)).any():
        return f"tokens: a new token is not in the vocabulary (0 to {vocab - 1})"
    problem = frequency_problem(tokens[:, length], data["probs"])
    return f"first new token: {problem}" if problem else None


def _generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
              generator=None, use_cache=False, *, position=-1, crop=True, fresh_cache=False):
    """Generation, without the cache, with one step switchable: the position sampled
    from, cropping the context to ``max_len``, or (with ``use_cache``) a cache made afresh
    at every step, so that the newest token sits at position 0."""
    for _ in range(max_new_tokens):
        if use_cache and fresh_cache:
            logits = model(idx[:, -1:], cache=model.new_cache())
        else:
            logits = model(idx[:, -model.max_len:] if crop else idx)
        token = ref.sample_next_token(logits[:, position], temperature, top_k, top_p, generator)
        idx = torch.cat([idx, token[:, None]], dim=1)
    return idx


def _generate_new_only(*args, **kwargs):
    idx = args[1]
    return ref.generate(*args, **kwargs)[:, idx.size(1):]


def _generate_default_settings(model, idx, max_new_tokens, temperature=1.0, top_k=None,
                               top_p=None, generator=None, use_cache=False):
    return ref.generate(model, idx, max_new_tokens, generator=generator, use_cache=use_cache)


GENERATE = Exercise(
    name="generate",
    chapter=CHAPTER,
    reference=ref.generate,
    make_cases=_generate_cases,
    run=_run_generate,
    outputs=("tokens", "cached_tokens"),
    keep=("idx",),
    compare=_compare_generate,
    mistakes=[
        Mistake("first position",
                "You sample from the logits of the first position; the next token is predicted "
                "by the last one: logits[:, -1].", mutant(_generate, position=0)),
        Mistake("new tokens only",
                "Return the prompt followed by the new tokens, (B, L + max_new_tokens).",
                _generate_new_only),
        Mistake("cache restarted every step",
                "With use_cache=True, make one cache with model.new_cache() before the loop, "
                "feed the whole prompt once, then only the newest token; a new cache every "
                "step forgets the earlier tokens and their positions.",
                mutant(_generate, fresh_cache=True)),
        Mistake("context not cropped",
                "Without the cache, feed the model only the last model.max_len tokens "
                "(idx[:, -model.max_len:]); the whole text fails as soon as it outgrows the "
                "model's window.", mutant(_generate, crop=False)),
        Mistake("sampling settings not passed on",
                "temperature, top_k and top_p are not passed on to sample_next_token, so every "
                "step samples at temperature 1 from all tokens.", _generate_default_settings),
    ],
)

register(GPT_BLOCK, GPT, NEXT_TOKEN_LOSS, SAMPLE, GENERATE)
