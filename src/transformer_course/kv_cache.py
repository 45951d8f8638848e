"""The key/value cache of one attention layer, for generating text token by token.

In causal attention the keys and values of the tokens already seen never change, so a
model that generates one token at a time keeps them instead of recomputing them: each
step computes keys and values for the new tokens only, appends them here, and attends
with the new queries over everything stored. Chapter 6's ``GPT`` and chapter 8's
``Llama`` both keep one cache per layer.
"""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """The keys and values one attention layer has computed so far.

    ``k`` and ``v`` are ``(B, H, T, Dh)`` for the ``T`` positions seen, or None before
    the first :meth:`update`. ``H`` is however many key/value heads the layer stores: a
    grouped-query layer (chapter 8) caches its ``H_kv`` heads, before sharing them out
    among the query heads, which is where grouped-query attention saves memory.
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    def __len__(self) -> int:
        """Number of positions cached (``T``)."""
        return 0 if self.k is None else self.k.size(-2)

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append the new positions' ``k, v (B, H, T_new, Dh)``; return all cached
        ``k, v (B, H, T, Dh)``, the new positions last."""
        if self.k is not None:
            k = torch.cat([self.k, k], dim=-2)
            v = torch.cat([self.v, v], dim=-2)
        self.k, self.v = k, v
        return k, v
