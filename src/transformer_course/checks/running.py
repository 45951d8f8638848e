"""Running an implementation on one case: capture its outputs, its errors and the
forbidden torch functions it calls, without touching the caller's global state."""

from __future__ import annotations

import sys
import traceback
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from transformer_course.checks.exercise import Case, Exercise
from transformer_course.checks.results import Outcome


class OutputError(Exception):
    """The implementation returned something of the wrong kind (not a shape mismatch)."""


class _ForbiddenCalls(TorchFunctionMode):
    """Records calls to forbidden torch functions, however they are reached
    (``torch.softmax``, ``F.softmax``, ``x.softmax``, or inside ``nn.LayerNorm``), and
    to forbidden Python functions (the course's own helpers), seen by a profile hook
    that passes every event on to the hook already installed."""

    def __init__(self, forbidden: dict[str, Callable]):
        super().__init__()
        self.labels = {func: label for label, func in forbidden.items()}
        self.codes = {func.__code__: label for label, func in forbidden.items()
                      if isinstance(func, types.FunctionType)}
        self.used: list[str] = []
        self.previous: Any = None

    def _record(self, label: str) -> None:
        if label not in self.used:
            self.used.append(label)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        label = self.labels.get(func)
        if label is not None:
            self._record(label)
        return func(*args, **(kwargs or {}))

    def _profile(self, frame, event, arg):
        if event == "call" and frame.f_code in self.codes:
            self._record(self.codes[frame.f_code])
        if self.previous is not None:
            self.previous(frame, event, arg)

    def __enter__(self):
        if self.codes:
            self.previous = sys.getprofile()
            sys.setprofile(self._profile)
        return super().__enter__()

    def __exit__(self, *exc):
        if self.codes:
            sys.setprofile(self.previous)
        return super().__exit__(*exc)


def collect_outputs(raw: Any, names: Sequence[str]) -> dict[str, Tensor]:
    """Turn what an implementation returned into ``{name: plain Tensor}``.

    Raises:
        OutputError: with a message a student can act on, for a wrong kind of return.
    """
    if len(names) == 1:
        values = [raw]
    else:
        if not isinstance(raw, (tuple, list)) or len(raw) != len(names):
            got = type(raw).__name__ + (f" of length {len(raw)}" if isinstance(raw, (tuple, list)) else "")
            raise OutputError(f"expected a tuple ({', '.join(names)}), got {got}")
        values = list(raw)
    outputs = {}
    for name, value in zip(names, values, strict=True):
        if not isinstance(value, Tensor):
            raise OutputError(f"'{name}' should be a torch.Tensor, got {type(value).__name__}")
        outputs[name] = value.detach().as_subclass(Tensor).clone()
    return outputs


@contextmanager
def isolated() -> Iterator[None]:
    """Run a check without touching the caller's global state: the RNG state (CPU and
    CUDA), the default dtype, grad mode and the thread count are restored on exit.
    Inside, the global RNG is seeded with 0 (modules created by a case start from the
    same weights every time) and the default dtype is float32."""
    dtype, grad, threads = torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_num_threads()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)
            torch.set_default_dtype(torch.float32)
            yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_grad_enabled(grad)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def execute(exercise: Exercise, impl: Any, case: Case) -> Outcome:
    """Call ``impl`` on one case and capture outputs, errors and forbidden calls.

    Never raises for anything the implementation does wrong, and leaves the global
    state as it found it (:func:`isolated`).
    """
    monitor = _ForbiddenCalls(exercise.forbidden)
    try:
        with isolated(), torch.no_grad(), monitor:
            raw = exercise.run(impl, case.args)
        outputs = collect_outputs(raw, exercise.outputs)
        return Outcome(outputs=outputs, forbidden=monitor.used)
    except NotImplementedError:
        return Outcome(not_implemented=True, forbidden=monitor.used)
    except OutputError as err:
        return Outcome(error=str(err), forbidden=monitor.used)
    except Exception as err:  # any student error becomes feedback
        return Outcome(error=_describe_exception(err), forbidden=monitor.used)


def _describe_exception(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    where = ""
    for frame in reversed(frames):
        if "transformer_course" not in frame.filename.replace("\\", "/").split("/site-packages/")[-1]:
            where = f" (line {frame.lineno}: {frame.line})" if frame.line else f" (line {frame.lineno})"
            break
    return f"raised {type(err).__name__}: {err}{where}"
