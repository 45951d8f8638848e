"""Chapter 2: multi-head attention, built on chapter 1's scaled dot-product attention.

One module serves self-attention (query = key = value), cross-attention (keys and values
from another sequence) and causal attention (a causal mask).

The module computes attention the way chapter 1 wrote it, and keeps the weights for
heatmaps. :func:`fused_kernels` is the course's opt-in speed switch for training: inside
it, the one call a module makes to ``scaled_dot_product_attention`` runs PyTorch's fused
``F.scaled_dot_product_attention`` (which never stores the ``(L_q, L_k)`` matrices), and
chapter 4's LayerNorm runs ``F.layer_norm``; everything else runs as written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_course.attention import scaled_dot_product_attention


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """Split the model dimension into heads.

    Args:
        x: ``(B, L, D)`` with ``D`` divisible by ``n_heads``.
        n_heads: number of heads ``H``.

    Returns:
        ``(B, H, L, D // H)``: head ``h`` holds features ``h*Dh .. (h+1)*Dh - 1``.
    """
    ### BEGIN SOLUTION
    batch, length, d_model = x.shape
    # (B, L, D) -> (B, L, H, Dh): cut each feature vector into H consecutive blocks;
    # then swap L and H so that each head sees a whole (L, Dh) sequence of its own.
    return x.view(batch, length, n_heads, d_model // n_heads).transpose(1, 2)
    ### END SOLUTION


def merge_heads(x: Tensor) -> Tensor:
    """Inverse of :func:`split_heads`.

    Args:
        x: ``(B, H, L, Dh)``.

    Returns:
        ``(B, L, H * Dh)``, the heads concatenated feature-wise.
    """
    ### BEGIN SOLUTION
    batch, n_heads, length, d_head = x.shape
    # Positions back in front of heads, then glue each position's H blocks together.
    # reshape (not view): after the transpose the memory is no longer contiguous.
    return x.transpose(1, 2).reshape(batch, length, n_heads * d_head)
    ### END SOLUTION


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query, key, value and output projections.

    Args:
        d_model: model width ``D``; must be divisible by ``n_heads``.
        n_heads: number of heads ``H``; each works in ``D // H`` dimensions.
        dropout: dropout on the attention weights (training only).
        bias: whether the four projections have biases.

    After a forward pass, ``self.attn_weights`` holds the ``(B, H, L_q, L_k)`` weights
    (detached, before dropout).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.d_model, self.n_heads = d_model, n_heads
        ### BEGIN SOLUTION
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
        ### END SOLUTION
        self.attn_weights: Tensor | None = None

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query: ``(B, L_q, D)``.
            key, value: ``(B, L_k, D)``.
            mask: bool, True = may attend; ``(L_q, L_k)``, ``(B, L_q, L_k)`` or
                ``(B, 1, L_k)`` (a 4-D mask is taken to have its head dimension already).

        Returns:
            ``(B, L_q, D)``.
        """
        if mask is not None and mask.dtype != torch.bool:
            raise TypeError(
                f"mask must be a bool tensor (True = may attend), got {mask.dtype}; "
                "for nn.MultiheadAttention-style masks (True = hidden) pass ~mask.bool()"
            )
        ### BEGIN SOLUTION
        q = split_heads(self.w_q(query), self.n_heads)  # (B, H, L_q, Dh)
        k = split_heads(self.w_k(key), self.n_heads)  # (B, H, L_k, Dh)
        v = split_heads(self.w_v(value), self.n_heads)  # (B, H, L_k, Dh)
        if mask is not None and mask.dim() == 3:
            mask = mask.unsqueeze(1)  # (B, 1, L_q or 1, L_k): the same mask for every head
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        self.attn_weights = weights.detach()
        if self.training and self.dropout.p > 0:
            out = self.dropout(weights) @ v  # dropout acts on the weights, as in PyTorch
        return self.w_o(merge_heads(out))
        ### END SOLUTION



ATTENTION = "scaled_dot_product_attention"  # the seam: chapter 1's function, by name


def fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Chapter 1's ``scaled_dot_product_attention`` computed by PyTorch's fused kernel.

    Same arguments and output; the weights are never formed, so an empty
    ``(..., L_q, 0)`` tensor stands in for them. A square causal mask becomes
    ``is_causal=True``, which lets the kernel skip the hidden half of the scores.

    Args:
        q: ``(..., L_q, d_k)``; k: ``(..., L_k, d_k)``; v: ``(..., L_k, d_v)``.
        mask: bool, True = may attend, broadcastable to ``(..., L_q, L_k)``.

    Returns:
        ``(..., L_q, d_v)`` and the empty stand-in for the weights.
    """
    is_causal = (mask is not None and mask.dim() == 2 and mask.size(0) == mask.size(1)
                 and torch.equal(mask, torch.ones_like(mask).tril()))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if is_causal else mask,
                                         is_causal=is_causal)
    return out, out.new_empty(*out.shape[:-1], 0)


def _attention_through_kernel(forward: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``forward`` (a bound method that calls ``scaled_dot_product_attention`` by name)
    with that name bound to :func:`fused_attention` for the duration of each call."""
    names = forward.__func__.__globals__

    def fast(*args, **kwargs):
        saved = names[ATTENTION]
        names[ATTENTION] = fused_attention
        try:
            return forward(*args, **kwargs)
        finally:
            names[ATTENTION] = saved

    return fast


def _layer_norm_kernel(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """A LayerNorm's normalization as ``F.layer_norm``, with the module's own
    ``weight``, ``bias`` and ``eps``."""

    def fast(x: Tensor) -> Tensor:
        return F.layer_norm(x, module.weight.shape, module.weight, module.bias, module.eps)

    return fast


@dataclass
class FusedReport:
    """What :func:`fused_kernels` did: per module class, how many modules ran a kernel,
    and which were left as written (with the reason)."""

    fused: dict[str, int] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        done = ", ".join(f"{n} {name}" for name, n in self.fused.items()) or "nothing"
        text = (f"fused=True: {done} ran PyTorch kernels (attention: "
                "F.scaled_dot_product_attention; LayerNorm: F.layer_norm); the rest is the code "
                "as written")
        for name, why in self.kept.items():
            text += f"; {name} kept as written ({why})"
        return text


def _candidates(model: nn.Module) -> Iterator[tuple[nn.Module, Callable[..., Tensor]]]:
    """The modules the switch recognises by their contract, each with its fast forward."""
    for module in model.modules():
        cls = type(module)
        if cls.__module__.startswith("torch."):
            continue  # PyTorch's own modules are fused already
        forward = module.forward
        code = getattr(cls.forward, "__code__", None)
        if code is not None and ATTENTION in code.co_names and ATTENTION in cls.forward.__globals__:
            yield module, _attention_through_kernel(forward)
        elif (cls.__name__ == "LayerNorm" and hasattr(module, "eps")
              and {n for n, _ in module.named_parameters()} == {"weight", "bias"}):
            yield module, _layer_norm_kernel(module)


@contextmanager
def fused_kernels(model: nn.Module, rtol: float = 1e-4, atol: float = 1e-5) -> Iterator[FusedReport]:
    """The opt-in speed switch: inside the block, the modules of ``model`` that it
    recognises run PyTorch's fused kernels where the code would compute the same thing.

    - A module whose ``forward`` calls ``scaled_dot_product_attention`` by name (your
      ``MultiHeadAttention``, ``GroupedQueryAttention``, ...) gets that one call routed to
      :func:`fused_attention`; its projections, heads and everything else run as written.
    - A module named ``LayerNorm`` with ``weight``, ``bias`` and ``eps`` normalizes with
      ``F.layer_norm``.

    Each module's first call inside the block runs both ways and compares them; a module
    whose fast result differs (dropout on the attention weights in training, a forward
    that uses the weights themselves, ...) stays on its own code, and the report says so.
    On leaving the block every module gets its own ``forward`` back, so heatmaps drawn
    after training read ``attn_weights`` from the code as written.

    Args:
        model: any module.
        rtol, atol: how close the first fast output must be to the module's own.

    Yields:
        A :class:`FusedReport`, filled in as the modules run (print it after a step).
    """
    report = FusedReport()
    patched = []
    for module, fast in _candidates(model):
        name = type(module).__name__
        own = module.forward

        def first_call(*args, _module=module, _own=own, _fast=fast, _name=name, **kwargs):
            with torch.no_grad():
                want = _own(*args, **kwargs)
            try:
                got = _fast(*args, **kwargs)
            except Exception as err:  # any failure keeps the module's own code
                why = f"the fused path raised {type(err).__name__}"
            else:
                if got.shape == want.shape and torch.allclose(got, want, rtol=rtol, atol=atol):
                    report.fused[_name] = report.fused.get(_name, 0) + 1
                    _module.forward = _fast
                    return got
                why = "the fused path gave other outputs"
            report.kept[_name] = why
            _module.forward = _own
            return _own(*args, **kwargs)

        module.forward = first_call  # an instance attribute: nn.Module.__call__ uses it
        patched.append(module)
    try:
        yield report
    finally:
        for module in patched:
            del module.forward  # back to the class's own forward


def copy_to_torch(mha: MultiHeadAttention, target: nn.MultiheadAttention) -> nn.MultiheadAttention:
    """Copy the weights of ``mha`` into PyTorch's ``nn.MultiheadAttention``.

    PyTorch keeps the query, key and value projections stacked in one
    ``in_proj_weight`` of shape ``(3 * D, D)`` (rows ``0..D-1`` for the query, then key,
    then value) and calls the output projection ``out_proj``.

    Args:
        mha: the source module.
        target: an ``nn.MultiheadAttention(D, H, bias=...)`` of the same width, heads
            and bias setting, e.g. the ``self_attn`` of an ``nn.TransformerEncoderLayer``.

    Returns:
        ``target``, with its weights overwritten.
    """
    if (target.embed_dim, target.num_heads) != (mha.d_model, mha.n_heads):
        raise ValueError(
            f"target has embed_dim={target.embed_dim}, num_heads={target.num_heads}; "
            f"expected {mha.d_model} and {mha.n_heads}"
        )
    if (target.in_proj_bias is None) != (mha.w_q.bias is None):
        raise ValueError("source and target must agree on bias=True/False")
    with torch.no_grad():
        target.in_proj_weight.copy_(torch.cat([mha.w_q.weight, mha.w_k.weight, mha.w_v.weight]))
        target.out_proj.weight.copy_(mha.w_o.weight)
        if target.in_proj_bias is not None:
            target.in_proj_bias.copy_(torch.cat([mha.w_q.bias, mha.w_k.bias, mha.w_v.bias]))
            target.out_proj.bias.copy_(mha.w_o.bias)
    return target
