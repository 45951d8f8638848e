"""Helpers for the chapters' check modules: random inputs and weights, building a module
from a case's arguments, and mistakes made from flags."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from transformer_course.checks.running import OutputError


def build_module(cls: type, init: dict[str, Any], state_dict: dict[str, Tensor] | None) -> nn.Module:
    """Instantiate ``cls(**init)``, load ``state_dict`` by name and switch to eval mode.

    Raises:
        OutputError: when a parameter the exercise names is missing or misshapen.
    """
    module = cls(**init)
    if not isinstance(module, nn.Module):
        raise OutputError(f"{cls.__name__}(...) should be an nn.Module subclass")
    if state_dict is not None:
        own = module.state_dict()
        missing = [k for k in state_dict if k not in own]
        if missing:
            raise OutputError(
                f"{cls.__name__} has no parameter or buffer named {missing[0]!r}; the checks load "
                f"reference weights by name, so use the names the exercise gives "
                f"(expected: {', '.join(sorted(state_dict))})"
            )
        for key, value in state_dict.items():
            if own[key].shape != value.shape:
                raise OutputError(
                    f"{cls.__name__}.{key} has shape {tuple(own[key].shape)}, "
                    f"expected {tuple(value.shape)}"
                )
        dtype = _state_dtype(state_dict)
        if dtype is not None:
            module.to(dtype)  # before loading, so float64 weights are not rounded
        module.load_state_dict(state_dict, strict=False)
    return module.eval()


def _state_dtype(state_dict: dict[str, Tensor] | None) -> torch.dtype | None:
    if not state_dict:
        return None
    for value in state_dict.values():
        if value.dtype.is_floating_point:
            return value.dtype
    return None


def randn(generator: torch.Generator, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal tensor from ``generator`` (float64 draws cast, so that a float32
    and a float64 case with the same seed hold the same numbers)."""
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

