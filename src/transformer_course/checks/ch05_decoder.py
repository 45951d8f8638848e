"""Chapter 05 (decoder): visible cases and the catalogue of known mistakes.

Behaviours the chapter states, and the case that exercises each:

DecoderLayer
    cross-attention reads ``memory``;        every case
    ``tgt_mask`` to self-, ``memory_mask``   "... source padding mask", "... causal +
    to cross-attention                       target padding (B, L, L), source padding"
    a bare layer adds no causal mask         "pre-norm, gelu, float64, no masks at all"
    post-norm and pre-norm                   "post-norm, ..." and "pre-norm, ..." cases
    ``eps`` reaches the three norms          "post-norm, eps=0.5 ..."
    defaults (relu, post-norm); dropout      "defaults (relu, post-norm), dropout=0.5 in
    none in eval                             eval mode (no dropout)"
Decoder
    ``tgt_mask=None`` means causal           "... tgt_mask=None (causal) ..."
    an explicit ``tgt_mask`` is used as is   "explicit causal + target padding mask"
    memory_mask to every layer; embeddings   every case with source padding
    * sqrt(d_model)
    final norm only when norm_first          "pre-norm (final LayerNorm) ..."; the
                                             post-norm cases (no final norm)
Transformer
    ``encode``/``decode``/``forward``;       every case (memory and logits)
    src_mask to encoder and cross-attention  the "source padding" cases
    ``tgt_mask=None`` is causal              "no masks given (tgt_mask=None is causal)"
    explicit tgt_mask                        "explicit tgt_mask with target padding"
greedy_decode
    column 0 is bos_id; max_len counts it    every case; "max_len=4 reached before any
                                             row ends"
    the whole prefix fed back                every case
    eos filling; stop once all rows ended    "source padding: rows end at different
                                             steps, then all stop early"
    src_mask passed on                       the "source padding" cases
    other bos_id / eos_id                    "bos_id=9, eos_id=0, source padding"
    the source is encoded once               every case (``encode_calls`` output)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_course import decoder as ref
from transformer_course.attention import causal_mask, padding_mask
from transformer_course.checks.exercise import Case, Exercise, Mistake
from transformer_course.checks.kit import STATE, build_module, mutant, randn, random_state, run_module
from transformer_course.checks.registry import register

CHAPTER = "05_decoder"
F64 = torch.float64


def _mask(lengths, length):
    return None if lengths is None else padding_mask(torch.tensor(lengths), length)


def _causal_and_padding(lengths, length):
    """``(B, L, L)``: causal, and no query attends to target padding."""
    return causal_mask(length)[None] & padding_mask(torch.tensor(lengths), length)


# --------------------------------------------------------------------------- DecoderLayer


def _decoder_layer_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name, norm_first, activation, batch, l_tgt, l_src, tgt_mask, src_lengths,
             dtype=torch.float32, **extra):
        init = {"d_model": 16, "n_heads": 4, "d_ff": 32, "activation": activation,
                "norm_first": norm_first, **extra}
        if norm_first is None:  # the defaults: relu, post-norm, eps 1e-5
            init = {"d_model": 16, "n_heads": 4, "d_ff": 32, **extra}
        state = random_state(ref.DecoderLayer(**init), g, dtype, scale=1.5)
        return Case(name, {"init": init, STATE: state,
                           "x": randn(g, batch, l_tgt, 16, dtype=dtype),
                           "memory": randn(g, batch, l_src, 16, dtype=dtype),
                           "tgt_mask": tgt_mask, "memory_mask": _mask(src_lengths, l_src)})

    return [
        case("post-norm, causal tgt_mask, source padding mask", False, "relu", 3, 4, 6,
             causal_mask(4), [6, 2, 4]),
        case("post-norm, gelu, float64, causal tgt_mask, no memory_mask", False, "gelu", 2, 5, 3,
             causal_mask(5), None, F64),
        case("pre-norm, causal + target padding (B, L, L), source padding", True, "relu", 2, 5, 4,
             _causal_and_padding([5, 3], 5), [4, 1]),
        case("pre-norm, gelu, float64, no masks at all (the layer adds none)", True, "gelu",
             2, 4, 5, None, None, F64),
        case("post-norm, eps=0.5 (it reaches all three norms)", False, "relu", 2, 4, 5,
             causal_mask(4), [5, 3], eps=0.5),
        case("defaults (relu, post-norm), dropout=0.5 in eval mode (no dropout)", None, None,
             2, 4, 3, causal_mask(4), [3, 2], dropout=0.5),
    ]


class _DecoderLayerMutant(ref.DecoderLayer):
    """The reference layer with one step done wrong (a flag)."""

    pre_norm = None  # None: as norm_first says; True or False: always that
    self_mask = "given"  # or None (tgt_mask ignored) or "causal if None"
    cross_to_self = False  # the cross-attention reads the decoder's own states
    cross_mask = True  # memory_mask reaches the cross-attention
    residual = True  # around the cross-attention sub-layer
    norm_outside = False  # post-norm as x + norm(sublayer(x))

    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        if self.self_mask == "causal if None" and tgt_mask is None:
            tgt_mask = causal_mask(x.size(1))
        s_mask = None if self.self_mask is None else tgt_mask

        def cross_attn(h):
            if self.cross_to_self:
                return self.cross_attn(h, h, h, tgt_mask)
            return self.cross_attn(h, memory, memory, memory_mask if self.cross_mask else None)

        if self.norm_first if self.pre_norm is None else self.pre_norm:
            h = self.norm1(x)
            x = x + self.self_attn(h, h, h, s_mask)
            a = cross_attn(self.norm2(x))
            x = x + a if self.residual else a
            return x + self.ff(self.norm3(x))
        if self.norm_outside:
            x = x + self.norm1(self.self_attn(x, x, x, s_mask))
            x = x + self.norm2(cross_attn(x))
            return x + self.norm3(self.ff(x))
        x = self.norm1(x + self.self_attn(x, x, x, s_mask))
        a = cross_attn(x)
        x = self.norm2(x + a if self.residual else a)
        return self.norm3(x + self.ff(x))


class _DecoderLayerDefaultEps(ref.DecoderLayer):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, activation="relu", norm_first=False,
                 eps=1e-5):
        super().__init__(d_model, n_heads, d_ff, dropout, activation, norm_first, eps)
        self.norm1, self.norm2, self.norm3 = (ref.LayerNorm(d_model) for _ in range(3))


DECODER_LAYER = Exercise(
    name="DecoderLayer",
    chapter=CHAPTER,
    reference=ref.DecoderLayer,
    make_cases=_decoder_layer_cases,
    run=lambda cls, a: run_module(cls, a, "x", "memory", "tgt_mask", "memory_mask"),
    mistakes=[
        Mistake("cross-attention to itself",
                "The cross-attention attends to the decoder's own states; its keys and values "
                "come from the encoder: cross_attn(x, memory, memory, memory_mask).",
                mutant(_DecoderLayerMutant, cross_to_self=True)),
        Mistake("memory_mask not used",
                "The source padding mask does not reach the cross-attention, so the decoder "
                "reads the encoder's padding: pass memory_mask to cross_attn.",
                mutant(_DecoderLayerMutant, cross_mask=False)),
        Mistake("tgt_mask not used",
                "The self-attention ignores tgt_mask, so each position sees the future "
                "tokens: pass tgt_mask to self_attn.", mutant(_DecoderLayerMutant, self_mask=None)),
        Mistake("causal mask added by the layer",
                "A bare DecoderLayer applies only the masks it is given; the Decoder "
                "supplies the causal mask. Don't build one here when tgt_mask is None.",
                mutant(_DecoderLayerMutant, self_mask="causal if None")),
        Mistake("always pre-norm",
                "With norm_first=False (post-norm) normalise after each residual sum: "
                "x = norm1(x + self_attn(x, x, x, tgt_mask)), and so on. You compute pre-norm.",
                mutant(_DecoderLayerMutant, pre_norm=True)),
        Mistake("always post-norm",
                "With norm_first=True (pre-norm) each sub-layer reads norm(x) and its output "
                "is added to the raw x. You compute post-norm.", mutant(_DecoderLayerMutant, pre_norm=False)),
        Mistake("missing residual",
                "The cross-attention sub-layer has no residual connection: add its input "
                "back (x + cross_attn(...)).", mutant(_DecoderLayerMutant, residual=False)),
        Mistake("norm inside the residual",
                "You compute x + norm(sublayer(x)); post-norm is norm(x + sublayer(x)).",
                mutant(_DecoderLayerMutant, norm_outside=True)),
        Mistake("eps not passed to the norms",
                "The layer's eps does not reach its LayerNorms, which use their default: "
                "create them as LayerNorm(d_model, eps).", _DecoderLayerDefaultEps),
    ],
)

# --------------------------------------------------------------------------- Decoder


def _decoder_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name, norm_first, activation, batch, l_tgt, l_src, tgt_mask, src_lengths,
             dtype=torch.float32):
        init = {"vocab_size": 9, "d_model": 16, "n_heads": 2, "d_ff": 24, "n_layers": 2,
                "max_len": 32, "activation": activation, "norm_first": norm_first}
        state = random_state(ref.Decoder(**init), g, dtype, scale=0.5)
        return Case(name, {"init": init, STATE: state,
                           "tgt_ids": torch.randint(0, 9, (batch, l_tgt), generator=g),
                           "memory": randn(g, batch, l_src, 16, dtype=dtype),
                           "tgt_mask": tgt_mask, "memory_mask": _mask(src_lengths, l_src)})

    return [
        case("post-norm, tgt_mask=None (causal), source padding", False, "relu", 3, 5, 6,
             None, [6, 2, 4]),
        case("post-norm, float64, explicit causal + target padding mask", False, "relu", 2, 6, 4,
             _causal_and_padding([6, 3], 6), [4, 2], F64),
        case("pre-norm (final LayerNorm), gelu, tgt_mask=None, no memory_mask", True, "gelu",
             2, 4, 5, None, None),
    ]


class _DecoderMutant(ref.Decoder):
    """The reference decoder with one step left out or done wrong (a flag)."""

    causal_default = True  # tgt_mask=None means causal
    use_given = True  # an explicit tgt_mask is used
    pass_memory_mask = True
    scale_embedding = True
    final_norm = True
    norm_always = False  # a final norm after post-norm layers too

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.norm_always:
            self.norm = ref.LayerNorm(self.d_model)

    def forward(self, tgt_ids, memory, tgt_mask=None, memory_mask=None):
        if tgt_mask is None or not self.use_given:
            tgt_mask = causal_mask(tgt_ids.size(1)) if self.causal_default else None
        x = self.pos(self.embed(tgt_ids) * (math.sqrt(self.d_model) if self.scale_embedding else 1.0))
        for layer in self.layers:
            x = layer(x, memory, tgt_mask, memory_mask if self.pass_memory_mask else None)
        return self.norm(x) if (self.norm is not None and self.final_norm) else x


DECODER = Exercise(
    name="Decoder",
    chapter=CHAPTER,
    reference=ref.Decoder,
    make_cases=_decoder_cases,
    run=lambda cls, a: run_module(cls, a, "tgt_ids", "memory", "tgt_mask", "memory_mask"),
    mistakes=[
        Mistake("no causal mask",
                "With tgt_mask=None the decoder must use the causal mask "
                "(causal_mask(L_tgt)), or every position sees the tokens it should predict.",
                mutant(_DecoderMutant, causal_default=False)),
        Mistake("given tgt_mask ignored",
                "An explicit tgt_mask replaces the default: use it when it is given and build "
                "the causal mask only when tgt_mask is None.", mutant(_DecoderMutant, use_given=False)),
        Mistake("memory_mask not passed down",
                "memory_mask does not reach the layers: call layer(x, memory, tgt_mask, "
                "memory_mask).", mutant(_DecoderMutant, pass_memory_mask=False)),
        Mistake("embedding not scaled",
                "Multiply the token embeddings by sqrt(d_model) before adding positions.",
                mutant(_DecoderMutant, scale_embedding=False)),
        Mistake("no final norm",
                "With pre-norm layers the stack ends with the final LayerNorm self.norm.",
                mutant(_DecoderMutant, final_norm=False)),
        Mistake("final norm after post-norm layers",
                "A post-norm stack (norm_first=False) already ends in a LayerNorm: its last "
                "layer's norm3. Create the final self.norm only when norm_first is True "
                "(self.norm = None otherwise).", mutant(_DecoderMutant, norm_always=True)),
    ],
)

# --------------------------------------------------------------------------- Transformer

_TRANSFORMER_INIT = {"src_vocab_size": 11, "tgt_vocab_size": 7, "d_model": 16, "n_heads": 2,
                     "d_ff": 32, "n_layers": 2, "max_len": 32}


def _transformer_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name, batch, l_src, l_tgt, src_lengths, tgt_mask=None, dtype=torch.float32):
        state = random_state(ref.Transformer(**_TRANSFORMER_INIT), g, dtype, scale=0.5)
        return Case(name, {"init": _TRANSFORMER_INIT, STATE: state,
                           "src": torch.randint(0, 11, (batch, l_src), generator=g),
                           "tgt": torch.randint(0, 7, (batch, l_tgt), generator=g),
                           "src_mask": _mask(src_lengths, l_src), "tgt_mask": tgt_mask})

    return [
        case("src (3, 6), tgt (3, 4), source padding", 3, 6, 4, [6, 3, 2]),
        case("float64, src (2, 5), tgt (2, 5), source padding", 2, 5, 5, [5, 2], dtype=F64),
        case("no masks given (tgt_mask=None is causal)", 2, 4, 6, None),
        case("explicit tgt_mask with target padding", 2, 5, 4, [5, 4],
             _causal_and_padding([4, 2], 4)),
    ]


def _run_transformer(cls, a):
    model = build_module(cls, a["init"], a[STATE])
    memory = model.encode(a["src"], a["src_mask"])
    return memory, model(a["src"], a["tgt"], a["src_mask"], a["tgt_mask"])


class _TransformerMutant(ref.Transformer):
    """The reference Transformer with one mask misrouted or a step left out (a flag)."""

    encoder_mask = True  # src_mask reaches the encoder
    cross_mask = True  # src_mask reaches the cross-attention
    swapped = False  # the decoder's masks swapped
    apply_generator = True

    def encode(self, src, src_mask=None):
        return self.encoder(src, src_mask if self.encoder_mask else None)

    def decode(self, tgt, memory, src_mask=None, tgt_mask=None):
        if self.swapped:
            return self.decoder(tgt, memory, src_mask, tgt_mask)
        return self.decoder(tgt, memory, tgt_mask, src_mask if self.cross_mask else None)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None):
        states = self.decode(tgt, self.encode(src, src_mask), src_mask, tgt_mask)
        return self.generator(states) if self.apply_generator else states


TRANSFORMER = Exercise(
    name="Transformer",
    chapter=CHAPTER,
    reference=ref.Transformer,
    make_cases=_transformer_cases,
    run=_run_transformer,
    outputs=("memory", "logits"),
    mistakes=[
        Mistake("src_mask not reaching cross-attention",
                "decode ignores src_mask, so the decoder attends to source padding: pass it "
                "to the decoder as memory_mask.", mutant(_TransformerMutant, cross_mask=False)),
        Mistake("src_mask not reaching the encoder",
                "encode ignores src_mask: pass it to the encoder.",
                mutant(_TransformerMutant, encoder_mask=False)),
        Mistake("masks swapped",
                "The decoder takes (tgt_ids, memory, tgt_mask, memory_mask): src_mask goes in "
                "as memory_mask and tgt_mask as tgt_mask (use keywords).",
                mutant(_TransformerMutant, swapped=True)),
        Mistake("no generator",
                "forward returns the decoder's states; apply self.generator to get logits "
                "over the target vocabulary.", mutant(_TransformerMutant, apply_generator=False)),
    ],
)

# --------------------------------------------------------------------------- greedy_decode


class ReverserModel(nn.Module):
    """A stand-in for a trained Transformer with the same interface (``encode``,
    ``decode``, ``generator``, ``forward``): it "translates" a source by writing its
    real tokens in reverse order, then ``eos_id``, then (like an untrained model that
    does not know it should stop) the first source token again and again.

    Its output at target position ``t`` depends on ``t``, i.e. on the whole prefix
    being fed back, and on the source padding mask given to ``encode``. It counts the
    calls of ``encode`` (``encode_calls``): decoding encodes the source once.
    """

    def __init__(self, vocab_size: int, eos_id: int):
        super().__init__()
        self.vocab_size, self.eos_id = vocab_size, eos_id
        self.generator = nn.Identity()  # the states below are already logits
        self.encode_calls = 0

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Memory ``(B, L_src, V)``: one-hot source tokens, zero at padding."""
        self.encode_calls += 1
        real = torch.ones_like(src, dtype=torch.bool) if src_mask is None else src_mask[:, 0]
        return F.one_hot(src, self.vocab_size).float() * real[..., None]

    def decode(self, tgt: Tensor, memory: Tensor, src_mask: Tensor | None = None,
               tgt_mask: Tensor | None = None) -> Tensor:
        """``(B, L_tgt, V)`` scores whose argmax at position ``t`` is the next token."""
        n_real = (memory.sum(-1) > 0).sum(1)  # (B,)
        tokens = memory.argmax(-1)  # (B, L_src)
        src_pos = n_real[:, None] - 1 - torch.arange(tgt.size(1))[None, :]  # (B, L_tgt)
        copied = tokens.gather(1, src_pos.clamp(0, tokens.size(1) - 1))
        after = torch.where(src_pos == -1, self.eos_id, tokens[:, :1])
        return 10.0 * F.one_hot(torch.where(src_pos >= 0, copied, after), self.vocab_size).float()

    def forward(self, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None,
                tgt_mask: Tensor | None = None) -> Tensor:
        return self.generator(self.decode(tgt, self.encode(src, src_mask), src_mask, tgt_mask))


def _greedy_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)

    def case(name, batch, l_src, lengths, max_len, bos_id=1, eos_id=2, vocab_size=10):
        # Source tokens are never bos_id or eos_id.
        allowed = torch.tensor([t for t in range(vocab_size) if t not in (bos_id, eos_id)])
        src = allowed[torch.randint(0, len(allowed), (batch, l_src), generator=g)]
        return Case(name, {"vocab_size": vocab_size, "src": src, "src_mask": _mask(lengths, l_src),
                           "max_len": max_len, "bos_id": bos_id, "eos_id": eos_id})

    return [
        case("source padding: rows end at different steps, then all stop early", 4, 5,
             [5, 2, 4, 1], 12),
        case("no src_mask, source length 6, max_len 12", 2, 6, None, 12),
        case("bos_id=9, eos_id=0, source padding", 3, 4, [4, 3, 2], 10, bos_id=9, eos_id=0),
        case("max_len=4 reached before any row ends", 2, 6, [6, 5], 4),
    ]


def _run_greedy(impl, a):
    model = ReverserModel(a["vocab_size"], a["eos_id"]).eval()
    tokens = impl(model, a["src"], a["max_len"], a["bos_id"], a["eos_id"], a["src_mask"])
    return tokens, torch.tensor(model.encode_calls)


def _greedy(model, src, max_len, bos_id, eos_id, src_mask=None, *, last_only=False, stop=True,
            fill=True, keep_bos=True, extra_step=False, use_mask=True, reencode=False):
    """Greedy decoding with one step switchable (a flag)."""
    src_mask = src_mask if use_mask else None
    memory = model.encode(src, src_mask)
    ys = torch.full((src.size(0), 1), bos_id, dtype=torch.long)
    finished = torch.zeros(src.size(0), dtype=torch.bool)
    for _ in range(max_len - (0 if extra_step else 1)):
        inputs = ys[:, -1:] if last_only else ys
        if reencode:  # model(src, tgt) runs the encoder again at every step
            logits = model(src, inputs, src_mask)[:, -1]
        else:
            logits = model.generator(model.decode(inputs, memory, src_mask)[:, -1])
        next_token = logits.argmax(-1)
        if fill:
            next_token = next_token.masked_fill(finished, eos_id)
        ys = torch.cat([ys, next_token[:, None]], dim=1)
        finished |= next_token == eos_id
        if stop and finished.all():
            break
    return ys if keep_bos else ys[:, 1:]


GREEDY = Exercise(
    name="greedy_decode",
    chapter=CHAPTER,
    reference=ref.greedy_decode,
    make_cases=_greedy_cases,  # run on a stand-in model (ReverserModel), so every
    # behaviour of decoding shows in a few steps
    run=_run_greedy,
    outputs=("output", "encode_calls"),
    mistakes=[
        Mistake("only the last token fed back",
                "Each step must decode everything generated so far (ys), not only the last "
                "token: the decoder needs the whole prefix.", mutant(_greedy, last_only=True)),
        Mistake("no early stop",
                "Decoding goes on to max_len after every row has produced eos_id: stop as "
                "soon as all rows have finished.", mutant(_greedy, stop=False)),
        Mistake("no eos filling",
                "A row that has produced eos_id keeps generating; fill the rest of a finished "
                "row with eos_id (track a `finished` flag per row).", mutant(_greedy, fill=False)),
        Mistake("bos dropped",
                "The output starts with the bos_id column (and max_len counts it).",
                mutant(_greedy, keep_bos=False)),
        Mistake("max_len off by one",
                "max_len counts the leading bos_id: generate at most max_len - 1 tokens.",
                mutant(_greedy, extra_step=True)),
        Mistake("src_mask ignored",
                "Pass src_mask to both model.encode and model.decode, or the padding of the "
                "source changes the translation.", mutant(_greedy, use_mask=False)),
        Mistake("source encoded at every step",
                "The source is encoded again at every step (model(src, ys) runs the encoder "
                "each time); encode it once before the loop, memory = model.encode(src, "
                "src_mask), and call model.decode(ys, memory, src_mask) in the loop.",
                mutant(_greedy, reencode=True)),
    ],
)

register(DECODER_LAYER, DECODER, TRANSFORMER, GREEDY)
