"""Helpers for the chapters' check modules: random inputs and weights, building a module
from a case's arguments, and mistakes made from flags."""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import Tensor, nn

from transformer_course.checks.running import OutputError

STATE = "state"
"""The case argument that holds a module's weights (a state dict, or None for the
weights the module starts with); :func:`run_module` loads it."""


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


def random_state(module: nn.Module, generator: torch.Generator, dtype: torch.dtype = torch.float32, *,
                 scale: float = 1.0, fan_in: bool = True, gain: float = 0.5, bias: float = 0.5,
                 embedding: float | None = 1.0) -> dict[str, Tensor]:
    """Random weights for every parameter of ``module``, drawn from ``generator`` in
    state-dict order; buffers are kept as they are.

    - a matrix: ``scale * N(0, 1)``, divided by ``sqrt(fan-in)`` when ``fan_in``;
    - an ``nn.Embedding``'s table: ``embedding * N(0, 1)`` when ``embedding`` is given
      (a matrix otherwise);
    - a 1-D weight (a norm's gain): ``1 + gain * N(0, 1)``, and a bias: ``bias * N(0, 1)``:
      away from the values they start with, so that leaving one out shows.
    """
    params = dict(module.named_parameters(remove_duplicate=False))  # a tied head too
    state = {}
    for name, value in module.state_dict().items():
        if name not in params:
            state[name] = value.to(dtype)  # a buffer, such as a positional table
            continue
        noise = randn(generator, *value.shape, dtype=dtype)
        owner = module.get_submodule(name.rpartition(".")[0])
        if embedding is not None and isinstance(owner, nn.Embedding):
            state[name] = embedding * noise
        elif value.dim() > 1:
            state[name] = scale * noise / math.sqrt(value.shape[-1]) if fan_in else scale * noise
        elif name.endswith("weight"):
            state[name] = 1.0 + gain * noise
        else:
            state[name] = bias * noise
    return state


def run_module(cls: type, args: dict[str, Any], *inputs: str) -> Any:
    """Build ``cls`` from a case's ``init`` and :data:`STATE` and call it on the case's
    arguments named ``inputs``, in that order."""
    module = build_module(cls, args["init"], args[STATE])
    return module(*(args[name] for name in inputs))


def mutant(base: Any, /, **flags: Any) -> Any:
    """A catalogued mistake made from ``base`` and flags that switch one step.

    For a class: a subclass of ``base`` named like the reference class it derives from
    (the name a student's class has), with ``flags`` as class attributes. For a
    function: ``base`` with ``flags`` bound as keyword arguments.
    """
    if isinstance(base, type):
        name = next(c.__name__ for c in base.__mro__ if not c.__name__.startswith("_"))
        return type(name, (base,), flags)
    return functools.partial(base, **flags)
