"""Chapter 5: the decoder and the full encoder-decoder Transformer.

A decoder layer has three sub-layers, each in a residual connection with a LayerNorm:
masked self-attention over the target so far, cross-attention from the target to the
encoder's output (the "memory"), and the feed-forward network. ``greedy_decode`` turns a
trained model into a translator, one token at a time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from transformer_course.attention import causal_mask
from transformer_course.encoder import (
    Encoder,
    FeedForward,
    LayerNorm,
    mha_state_from_torch,
    sublayer_state_from_torch,
)
from transformer_course.multi_head import MultiHeadAttention
from transformer_course.positional import PositionalEncoding


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to ``memory``, then feed-forward; each
    sub-layer in a residual connection with its own LayerNorm.

    Post-norm (``norm_first=False``): ``x = norm(x + sublayer(x))``; pre-norm:
    ``x = x + sublayer(norm(x))``. The layer applies only the masks it is given (no
    causal mask by default): :class:`Decoder` supplies it.
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
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = LayerNorm(d_model, eps)
        self.norm2 = LayerNorm(d_model, eps)
        self.norm3 = LayerNorm(d_model, eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        ### END SOLUTION

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
    ) -> Tensor:
        """One decoder layer.

        Args:
            x: ``(B, L_tgt, D)`` target-side states.
            memory: ``(B, L_src, D)`` the encoder's output.
            tgt_mask: bool, True = may attend; ``(L_tgt, L_tgt)`` or
                ``(B, L_tgt, L_tgt)``, for the self-attention.
            memory_mask: bool, ``(B, 1, L_src)`` (source padding) or
                ``(B, L_tgt, L_src)``, for the cross-attention.

        Returns:
            ``(B, L_tgt, D)``.
        """
        ### BEGIN SOLUTION
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout1(self.self_attn(h, h, h, tgt_mask))
            h = self.norm2(x)
            x = x + self.dropout2(self.cross_attn(h, memory, memory, memory_mask))
            x = x + self.dropout3(self.ff(self.norm3(x)))
        else:
            x = self.norm1(x + self.dropout1(self.self_attn(x, x, x, tgt_mask)))
            x = self.norm2(x + self.dropout2(self.cross_attn(x, memory, memory, memory_mask)))
            x = self.norm3(x + self.dropout3(self.ff(x)))
        return x
        ### END SOLUTION


class Decoder(nn.Module):
    """Target embedding (scaled by sqrt(d_model)), sinusoidal positions and a stack of
    decoder layers; a final LayerNorm when the layers are pre-norm."""

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
            DecoderLayer(d_model, n_heads, d_ff, dropout, activation, norm_first)
            for _ in range(n_layers)
        )
        self.norm = LayerNorm(d_model) if norm_first else None
        ### END SOLUTION

    def forward(
        self,
        tgt_ids: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
    ) -> Tensor:
        """``tgt_ids (B, L_tgt)``, ``memory (B, L_src, D)`` -> ``(B, L_tgt, D)``.

        ``tgt_mask=None`` means the causal mask; pass an explicit mask to combine it
        with padding.
        """
        ### BEGIN SOLUTION
        if tgt_mask is None:
            tgt_mask = causal_mask(tgt_ids.size(1)).to(tgt_ids.device)
        x = self.pos(self.embed(tgt_ids) * math.sqrt(self.d_model))
        for layer in self.layers:
            x = layer(x, memory, tgt_mask, memory_mask)
        return self.norm(x) if self.norm is not None else x
        ### END SOLUTION


class Transformer(nn.Module):
    """The encoder-decoder Transformer of "Attention Is All You Need" (post-norm, ReLU).

    ``encode`` reads the source once; ``decode`` returns the decoder's states
    ``(B, L_tgt, d_model)``; ``generator`` turns states into logits; ``forward`` does
    all three (teacher forcing: the whole shifted target at once).
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        d_model: int = 128,
        n_heads: int = 4,
        d_ff: int = 512,
        n_layers: int = 2,
        max_len: int = 512,
        dropout: float = 0.0,
    ):
        super().__init__()
        ### BEGIN SOLUTION
        self.encoder = Encoder(src_vocab_size, d_model, n_heads, d_ff, n_layers, max_len, dropout)
        self.decoder = Decoder(tgt_vocab_size, d_model, n_heads, d_ff, n_layers, max_len, dropout)
        self.generator = nn.Linear(d_model, tgt_vocab_size)
        ### END SOLUTION

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """``src (B, L_src)`` ids, ``src_mask (B, 1, L_src)`` -> memory ``(B, L_src, D)``."""
        ### BEGIN SOLUTION
        return self.encoder(src, src_mask)
        ### END SOLUTION

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
    ) -> Tensor:
        """``tgt (B, L_tgt)`` ids attending to ``memory`` -> states ``(B, L_tgt, D)``.

        ``src_mask`` hides source padding from the cross-attention; ``tgt_mask=None``
        means causal.
        """
        ### BEGIN SOLUTION
        return self.decoder(tgt, memory, tgt_mask, src_mask)
        ### END SOLUTION

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
    ) -> Tensor:
        """``src (B, L_src)``, ``tgt (B, L_tgt)`` -> logits ``(B, L_tgt, tgt_vocab)``;
        position ``t`` predicts target token ``t + 1``."""
        ### BEGIN SOLUTION
        memory = self.encode(src, src_mask)
        return self.generator(self.decode(tgt, memory, src_mask, tgt_mask))
        ### END SOLUTION


@torch.no_grad()
def greedy_decode(
    model: Transformer,
    src: Tensor,
    max_len: int,
    bos_id: int,
    eos_id: int,
    src_mask: Tensor | None = None,
) -> Tensor:
    """Translate ``src`` by always picking the most likely next token.

    The source is encoded once; the decoder then re-reads everything generated so far
    at each step.

    Args:
        model: a :class:`Transformer` (``encode``, ``decode``, ``generator``).
        src: ``(B, L_src)`` source ids.
        max_len: the longest output, counting the leading ``bos_id``.
        bos_id, eos_id: start and end tokens.
        src_mask: ``(B, 1, L_src)`` source padding mask, or None.

    Returns:
        LongTensor ``(B, <= max_len)``: column 0 is ``bos_id``; after a row produces
        ``eos_id`` the rest of the row is ``eos_id``; decoding stops once every row has
        finished.
    """
    ### BEGIN SOLUTION
    memory = model.encode(src, src_mask)
    ys = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    for _ in range(max_len - 1):
        logits = model.generator(model.decode(ys, memory, src_mask)[:, -1])
        next_token = logits.argmax(dim=-1).masked_fill(finished, eos_id)
        ys = torch.cat([ys, next_token[:, None]], dim=1)
        finished |= next_token == eos_id
        if finished.all():
            break
    return ys
    ### END SOLUTION


def state_dict_from_torch_decoder_layer(layer: nn.TransformerDecoderLayer) -> dict[str, Tensor]:
    """The weights of a ``torch.nn.TransformerDecoderLayer`` under this course's names,
    ready for ``DecoderLayer.load_state_dict``."""
    return {
        **mha_state_from_torch(layer.self_attn, "self_attn."),
        **mha_state_from_torch(layer.multihead_attn, "cross_attn."),
        **sublayer_state_from_torch(layer, ["norm1", "norm2", "norm3"]),
    }
