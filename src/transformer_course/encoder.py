"""Chapter 4: the encoder: layer normalization, the feed-forward network, the encoder
layer (self-attention and feed-forward, each with a residual connection and a layer
norm) and the stack."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_course.multi_head import MultiHeadAttention
from transformer_course.positional import PositionalEncoding


class LayerNorm(nn.Module):
    """Layer normalization over the last dimension, with a learned scale and shift.

    Args:
        d_model: size of the last dimension.
        eps: added to the variance inside the square root.
    """

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        ### BEGIN SOLUTION
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """``x (..., D)`` -> same shape; each feature vector to mean 0, variance 1, then
        ``* weight + bias``."""
        ### BEGIN SOLUTION
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # biased, as in the paper
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
        ### END SOLUTION


class FeedForward(nn.Module):
    """Position-wise feed-forward network: ``linear2(activation(linear1(x)))``.

    Args:
        d_model: input and output width.
        d_ff: hidden width (typically ``4 * d_model``).
        dropout: dropout after the activation.
        activation: ``"relu"`` or ``"gelu"`` (exact, erf-based).
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        self.activation = activation
        ### BEGIN SOLUTION
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """``x (..., d_model)`` -> ``(..., d_model)``, each position independently."""
        ### BEGIN SOLUTION
        hidden = self.linear1(x)
        hidden = F.relu(hidden) if self.activation == "relu" else F.gelu(hidden)
        return self.linear2(self.dropout(hidden))
        ### END SOLUTION


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each in a residual connection with a LayerNorm.

    Post-norm (``norm_first=False``, the original paper): ``x = norm(x + sublayer(x))``.
    Pre-norm (``norm_first=True``): ``x = x + sublayer(norm(x))``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.norm_first = norm_first
        ### BEGIN SOLUTION
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = LayerNorm(d_model, eps)
        self.norm2 = LayerNorm(d_model, eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        ### END SOLUTION

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x (B, L, D)``, ``mask`` as for MultiHeadAttention -> ``(B, L, D)``."""
        ### BEGIN SOLUTION
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout1(self.self_attn(h, h, h, mask))
            x = x + self.dropout2(self.ff(self.norm2(x)))
        else:
            x = self.norm1(x + self.dropout1(self.self_attn(x, x, x, mask)))
            x = self.norm2(x + self.dropout2(self.ff(x)))
        return x
        ### END SOLUTION


class Encoder(nn.Module):
    """Token embedding (scaled by sqrt(d_model)), sinusoidal positions and a stack of
    encoder layers; a final LayerNorm when the layers are pre-norm."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        n_layers: int,
        max_len: int = 5000,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = False,
    ):
        super().__init__()
        self.d_model = d_model
        ### BEGIN SOLUTION
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = PositionalEncoding(d_model, max_len, dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_ff, dropout, activation, norm_first)
            for _ in range(n_layers)
        )
        self.norm = LayerNorm(d_model) if norm_first else None
        ### END SOLUTION

    def forward(self, src_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """``src_ids (B, L)`` token ids -> ``(B, L, d_model)``."""
        ### BEGIN SOLUTION
        x = self.pos(self.embed(src_ids) * math.sqrt(self.d_model))
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x) if self.norm is not None else x
        ### END SOLUTION


def mha_state_from_torch(mha: nn.MultiheadAttention, prefix: str = "") -> dict[str, Tensor]:
    """The weights of a ``torch.nn.MultiheadAttention`` under this course's names.

    PyTorch packs the query, key and value projections into one ``in_proj_weight``
    ``(3 * D, D)``; the course keeps them as ``w_q``, ``w_k``, ``w_v``.
    """
    w_q, w_k, w_v = mha.in_proj_weight.detach().chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.detach().chunk(3)
    return {
        f"{prefix}w_q.weight": w_q.clone(), f"{prefix}w_q.bias": b_q.clone(),
        f"{prefix}w_k.weight": w_k.clone(), f"{prefix}w_k.bias": b_k.clone(),
        f"{prefix}w_v.weight": w_v.clone(), f"{prefix}w_v.bias": b_v.clone(),
        f"{prefix}w_o.weight": mha.out_proj.weight.detach().clone(),
        f"{prefix}w_o.bias": mha.out_proj.bias.detach().clone(),
    }


def state_dict_from_torch_encoder_layer(layer: nn.TransformerEncoderLayer) -> dict[str, Tensor]:
    """The weights of a ``torch.nn.TransformerEncoderLayer`` under this course's names,
    ready for ``EncoderLayer.load_state_dict``."""
    return {
        **mha_state_from_torch(layer.self_attn, "self_attn."),
        **sublayer_state_from_torch(layer, ["norm1", "norm2"]),
    }


def sublayer_state_from_torch(layer: nn.Module, norms: list[str]) -> dict[str, Tensor]:
    """Weights and biases of a PyTorch Transformer layer's feed-forward network
    (``linear1``, ``linear2``, ours under ``ff.``) and of the named LayerNorms."""
    names = [("ff.linear1", "linear1"), ("ff.linear2", "linear2"), *((n, n) for n in norms)]
    return {
        f"{ours}.{kind}": getattr(layer, theirs).state_dict()[kind].clone()
        for ours, theirs in names
        for kind in ("weight", "bias")
    }
