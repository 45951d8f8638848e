"""Preparing the data that judging needs: the cases of a seed, the reference's outputs
on them (with a float64 truth and the reference's own error band) and the catalogued
mistakes' outputs. The only place where the reference and the mistakes run; in the
student edition the data stored at release time stands in for them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from transformer_course.checks import stored
from transformer_course.checks.exercise import Case, Exercise
from transformer_course.checks.running import collect_outputs, execute, isolated


@dataclass
class Prepared:
    """Everything the judge needs for the cases of one (exercise, seed); see :func:`prepare`."""

    cases: list[Case]
    data: list[dict[str, Tensor]]
    mistakes: dict[str, list[dict[str, Tensor] | None]] = field(default_factory=dict)


_CACHE: dict[tuple[str, int], Prepared] = {}


def prepare(exercise: Exercise, seed: int, mistakes: bool = True) -> Prepared:
    """The cases of ``seed`` and all the data that judging them needs (cached).

    This is the only place where the reference and the catalogued mistakes run; what it
    returns is plain data (tensors and JSON values), so it can be stored and judged
    without them. ``data[i]`` describes case ``i``, one entry per output ``<name>``:

    - ``expected/<name>``: the reference's output on the case as given: its shape and
      dtype are required, and its values, exactly, for outputs that are not floating
      point (tokens, masks, ids).
    - ``truth/<name>`` (floating-point outputs): the reference computed in float64 (the
      case's floating tensors cast to float64, default dtype float64); values are
      compared with it.
    - ``band/<name>`` (floating-point outputs): a 0-d float64 tensor, the reference's
      own largest absolute error against the truth at the case's precision (for a
      float64 case: its float32 error scaled by 2**-29, the ratio of the two epsilons).
      A case with no floating-point input has no float64 run; its truth is the
      reference's output and its band 0.
    - ``probs`` (cases that sample): ``(rows, V)`` float64, the distribution that the
      reference's first ``torch.multinomial`` call drew from, one row per draw (the
      exercise's ``compare`` knows which output those draws are).
    - ``args/<name>``: the case's tensor argument ``<name>``, for each name in the
      exercise's ``keep``.

    ``mistakes`` maps each catalogued mistake's name to the same data computed with the
    mistake in place of the reference, per case (None where the mistake raises), without
    ``truth`` and ``band``: a student's output matches a mistake when it is close to what
    the mistake returns at the case's precision (an overflow in float32 is part of the
    mistake). It is computed only when ``mistakes`` is True (a check needs it only when a
    case fails).
    """
    key = (exercise.name, seed)
    if key not in _CACHE and (shipped := stored.load_prepared(exercise.name, seed)) is not None:
        _CACHE[key] = Prepared(**shipped)  # the student edition: stored at release time, no reference
    if key not in _CACHE:
        with isolated():
            cases = exercise.make_cases(seed)
        data = []
        for case in cases:
            found, error = case_data(exercise, exercise.reference, case)
            if found is None:
                raise RuntimeError(f"reference for {exercise.name} failed on case {case.name!r}: {error}")
            data.append(found)
        _CACHE[key] = Prepared(cases, data)
    prepared = _CACHE[key]
    if mistakes and len(prepared.mistakes) < len(exercise.mistakes):
        for mistake in exercise.mistakes:
            prepared.mistakes[mistake.name] = [case_data(exercise, mistake.impl, case, with_truth=False)[0]
                                               for case in prepared.cases]
    return prepared


def reference_run(exercise: Exercise, seed: int) -> tuple[list[Case], list[dict[str, Tensor]]]:
    """The cases for ``seed`` and their prepared data (:func:`prepare`), cached."""
    prepared = prepare(exercise, seed, mistakes=False)
    return prepared.cases, prepared.data


def mistake_run(exercise: Exercise, seed: int) -> dict[str, list[dict[str, Tensor] | None]]:
    """The catalogued mistakes' prepared data on the cases of ``seed`` (cached)."""
    return prepare(exercise, seed).mistakes


def expected_outputs(data: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``{output name: expected tensor}`` from one case's prepared data."""
    return {key.split("/", 1)[1]: value for key, value in data.items() if key.startswith("expected/")}


class _RecordDraws(TorchFunctionMode):
    """Records the probabilities handed to ``torch.multinomial``."""

    def __init__(self) -> None:
        super().__init__()
        self.probs: list[Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.multinomial:
            probs = (args[0] if args else kwargs["input"]).detach().to(torch.float64)
            self.probs.append(probs / probs.sum(dim=-1, keepdim=True))
        return func(*args, **kwargs)


def case_data(exercise: Exercise, impl: Any, case: Case, with_truth: bool = True
              ) -> tuple[dict[str, Tensor] | None, str | None]:
    """The prepared data of one case (layout in :func:`prepare`) for ``impl`` (the
    reference or a catalogued mistake), or ``(None, error)`` when it raises; with
    ``with_truth`` False, without the float64 run (``truth/`` and ``band/`` entries)."""
    draws = _RecordDraws()
    with draws:
        outcome = execute(exercise, impl, case)
    if outcome.outputs is None:
        return None, outcome.error or "not implemented"
    data = {f"expected/{k}": v for k, v in outcome.outputs.items()}
    if draws.probs:
        data["probs"] = draws.probs[0]
    data.update({f"args/{name}": case.args[name] for name in exercise.keep})
    floats = [k for k, v in outcome.outputs.items() if v.dtype.is_floating_point]
    if not floats or not with_truth:
        return data, None
    truth = _run_in(exercise, impl, case, torch.float64)
    is64 = _precision(case.args) == torch.float64
    other = _run_in(exercise, impl, case, torch.float32) if is64 else outcome.outputs
    for name in floats:
        value = outcome.outputs[name]
        want = truth.get(name) if truth else None
        got = other.get(name) if other else None
        if want is None or want.shape != value.shape or not want.dtype.is_floating_point:
            data[f"truth/{name}"], data[f"band/{name}"] = value.double(), torch.zeros((), dtype=torch.float64)
            continue
        want = want.double()
        data[f"truth/{name}"] = want
        band = torch.zeros((), dtype=torch.float64)
        if got is not None and got.shape == want.shape:
            err = (got.double() - want).abs()
            err = err[want.isfinite() & got.isfinite()]
            if err.numel():
                band = err.max() * (2.0**-29 if is64 else 1.0)
        data[f"band/{name}"] = band
    return data, None


def _precision(value: Any) -> torch.dtype | None:
    """The dtype of the floating-point tensors among a case's arguments (float64 wins)."""
    found = None
    if isinstance(value, Tensor):
        return value.dtype if value.dtype.is_floating_point else None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for item in items:
        dtype = _precision(item)
        if dtype == torch.float64:
            return dtype
        found = found or dtype
    return found


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, Tensor):
        return value.to(dtype) if value.dtype.is_floating_point else value
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    return value


def _run_in(exercise: Exercise, impl: Any, case: Case, dtype: torch.dtype) -> dict[str, Tensor] | None:
    """``impl``'s outputs on the case with every floating tensor (and the default dtype)
    in ``dtype``; None when the case has no floating input or the run fails."""
    if _precision(case.args) is None and dtype == torch.float32:
        return None
    args = _cast(case.args, dtype)
    try:
        with isolated(), torch.no_grad():
            torch.set_default_dtype(dtype)
            return collect_outputs(exercise.run(impl, args), exercise.outputs)
    except Exception:  # no float64 run: the band falls back to 0
        return None
