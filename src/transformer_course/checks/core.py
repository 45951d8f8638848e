"""The machinery shared by the in-notebook checks and the autograder.

An :class:`Exercise` knows how to build its test cases, how to call an implementation on
a case (:attr:`Exercise.run`) and which known mistakes to recognise. Running a case
(:func:`execute`) and judging the outputs (:func:`judge`) are separate steps so that the
autograder can run the student's code in a child process and judge in the parent, while
``check`` does both in the notebook's own process.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class Case:
    """One test case: a name a student can read and the arguments of the call.

    ``args`` values are tensors, dicts of tensors (a state dict) or JSON values
    (numbers, strings, booleans, None, lists), so a case can cross a process boundary.
    """

    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Mistake:
    """A known wrong variant of an exercise and the hint shown when a student's output
    matches it. ``impl`` stands in for the student's object (same signature)."""

    name: str
    hint: str
    impl: Any


@dataclass
class Exercise:
    """A graded exercise of the course, as COURSE_SPEC.md names it.

    Attributes:
        name: the graded object's name (``softmax``, ``MultiHeadAttention``).
        chapter: the chapter id (``01_attention``).
        reference: the reference object.
        make_cases: ``seed -> list[Case]``; deterministic for a given seed.
        run: ``(implementation, args) -> output``; calls the object the way the
            exercise asks (for a class: build it, load weights, call forward).
        outputs: names of the returned tensors; one name means a single tensor,
            several mean a tuple in that order.
        mistakes: the catalogue of known wrong variants.
        forbidden: ``{label: torch function}`` that the implementation may not call.
        rtol, atol: the floor of the tolerance for floating-point outputs (float64
            cases use ``atol64``); on top of it comes :data:`BAND_FACTOR` times the
            reference's own error on the case (see :func:`prepare`).
        keep: names of tensor arguments copied into the case data (``args/<name>``)
            for ``compare`` (a prompt that must come back unchanged).
        compare: optional ``(case data, actual outputs) -> message or None`` replacing
            the default comparison (:func:`compare_outputs`) of a whole case; the case
            data is what :func:`prepare` stored for it. Sampling exercises use it to judge
            the distribution of what was drawn.
    """

    name: str
    chapter: str
    reference: Any
    make_cases: Callable[[int], list[Case]]
    run: Callable[[Any, dict[str, Any]], Any]
    outputs: tuple[str, ...] = ("output",)
    mistakes: list[Mistake] = field(default_factory=list)
    forbidden: dict[str, Callable] = field(default_factory=dict)
    rtol: float = 1e-4
    atol: float = 1e-5
    atol64: float = 1e-9
    keep: tuple[str, ...] = ()
    compare: Callable[[dict[str, Tensor], dict[str, Tensor]], str | None] | None = None

    @property
    def points(self) -> int:
        from transformer_course.checks.rubric import points_for

        return points_for(self.chapter, self.name)


@dataclass
class Outcome:
    """What calling an implementation on one case produced (picklable-free: tensors and
    strings only)."""

    outputs: dict[str, Tensor] | None = None
    error: str | None = None
    not_implemented: bool = False
    forbidden: list[str] = field(default_factory=list)


@dataclass
class CaseResult:
    name: str
    passed: bool
    message: str = ""
    mistake: str | None = None


@dataclass
class CheckResult:
    """The verdict on one exercise. Shows itself as HTML in Jupyter and as text elsewhere.

    ``passed`` is True only when every case passed and no forbidden built-in was used.
    """

    exercise: str
    chapter: str
    status: str  # "passed", "failed", "not implemented", "forbidden"
    cases: list[CaseResult]
    max_points: float
    hints: list[Mistake] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def n_passed(self) -> int:
        return sum(c.passed for c in self.cases)

    @property
    def score(self) -> float:
        """Points earned: the exercise's points shared equally among its cases."""
        if self.status in ("not implemented", "forbidden") or not self.cases:
            return 0.0
        return self.max_points * self.n_passed / len(self.cases)

    def headline(self) -> str:
        if self.status == "passed":
            return f"{self.exercise}: passed all {len(self.cases)} cases."
        if self.status == "not implemented":
            return f"{self.exercise}: not implemented yet (it still raises NotImplementedError)."
        if self.status == "forbidden":
            used = ", ".join(self.forbidden)
            return (
                f"{self.exercise}: uses {used}, which this exercise asks you to write "
                "yourself. Replace it with your own code (earlier exercises are fine)."
            )
        return f"{self.exercise}: {self.n_passed} of {len(self.cases)} cases passed."

    def __str__(self) -> str:
        lines = [("PASS " if self.passed else "FAIL ") + self.headline()]
        if self.note:
            lines.append(f"  {self.note}")
        for hint in self.hints:
            lines.append(f"  Likely mistake: {hint.hint}")
        if self.status == "failed":
            for case in self.cases:
                mark = "ok  " if case.passed else "FAIL"
                lines.append(f"  [{mark}] {case.name}" + ("" if case.passed else f": {case.message}"))
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from html import escape

        colour = "#1a7f37" if self.passed else "#cf222e"
        if self.status == "not implemented":
            colour = "#9a6700"
        icon = "&#10004;" if self.passed else "&#10008;"
        parts = [
            f'<div style="border-left:4px solid {colour};padding:4px 10px;margin:4px 0">',
            f'<b style="color:{colour}">{icon} {"PASS" if self.passed else "FAIL"} '
            f"{escape(self.headline())}</b>",
            f'<span style="float:right">{self.score:.4g} / {self.max_points:g} '
            f'point{"" if self.max_points == 1 else "s"}</span>',
        ]
        if self.note:
            parts.append(f"<div>{escape(self.note)}</div>")
        for hint in self.hints:
            parts.append(f"<div><b>Likely mistake:</b> {escape(hint.hint)}</div>")
        if self.status == "failed":
            rows = "".join(
                f"<tr><td>{'&#10004;' if c.passed else '&#10008;'}</td>"
                f"<td>{escape(c.name)}</td><td>{escape(c.message)}</td></tr>"
                for c in self.cases
            )
            parts.append(f'<table style="font-size:90%">{rows}</table>')
        parts.append("</div>")
        return "".join(parts)


# --------------------------------------------------------------------------- running


class OutputError(Exception):
    """The implementation returned something of the wrong kind (not a shape mismatch)."""


class _ForbiddenCalls(TorchFunctionMode):
    """Records calls to forbidden torch functions, however they are reached
    (``torch.softmax``, ``F.softmax``, ``x.softmax``, or inside ``nn.LayerNorm``)."""

    def __init__(self, forbidden: dict[str, Callable]):
        super().__init__()
        self.labels = {func: label for label, func in forbidden.items()}
        self.used: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        label = self.labels.get(func)
        if label is not None and label not in self.used:
            self.used.append(label)
        return func(*args, **(kwargs or {}))


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
    except Exception as err:  # noqa: BLE001 - any student error becomes feedback
        return Outcome(error=_describe_exception(err), forbidden=monitor.used)


def _describe_exception(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    where = ""
    for frame in reversed(frames):
        if "transformer_course" not in frame.filename.replace("\\", "/").split("/site-packages/")[-1]:
            where = f" (line {frame.lineno}: {frame.line})" if frame.line else f" (line {frame.lineno})"
            break
    return f"raised {type(err).__name__}: {err}{where}"


# --------------------------------------------------------------------------- judging

BAND_FACTOR = 10.0
"""A floating-point output passes when its error against the float64 truth is within
``atol + rtol * |truth| + BAND_FACTOR * band``, ``band`` being the reference's own error
on the case (:func:`prepare`): a correct implementation written another way makes errors
of the same size as the reference's, on well- and ill-conditioned cases alike."""


def compare_tensors(expected: Tensor, actual: Tensor, rtol: float, atol: float,
                    truth: Tensor | None = None) -> str | None:
    """None when ``actual`` matches; otherwise what differs, in words.

    Shape and dtype must be those of ``expected``. Values are compared with ``truth``
    when given (the float64 reference), else with ``expected``, within
    ``atol + rtol * |want|`` for floating-point tensors and exactly otherwise.
    """
    if actual.shape != expected.shape:
        return f"shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype}, expected {expected.dtype}"
    if expected.numel() == 0:
        return None
    if expected.dtype.is_floating_point or expected.dtype.is_complex:
        want = expected if truth is None else truth
        actual = actual.to(want.dtype)
        nan_expected, nan_actual = want.isnan(), actual.isnan()
        if (nan_actual & ~nan_expected).any():
            index = _first_index(nan_actual & ~nan_expected)
            return f"NaN at index {index}, expected {want[index].item():.6g}"
        inf_actual = actual.isinf() & ~want.isinf()
        if inf_actual.any():
            index = _first_index(inf_actual)
            return f"{actual[index].item()} at index {index}, expected {want[index].item():.6g}"
        close = torch.isclose(actual, want, rtol=rtol, atol=atol, equal_nan=True)
        if bool(close.all()):
            return None
        diff = (actual - want).abs().nan_to_num(0.0, posinf=math.inf)
        index = _first_index(~close)
        return (
            f"values differ: max abs error {diff.max().item():.3g}; first at index {index}: "
            f"got {actual[index].item():.6g}, expected {want[index].item():.6g}"
        )
    different = actual != expected
    if not different.any():
        return None
    index = _first_index(different)
    return (
        f"{int(different.sum())} of {expected.numel()} values differ; first at index {index}: "
        f"got {actual[index].item()}, expected {expected[index].item()}"
    )


def _first_index(flags: Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in flags.nonzero()[0])


def tolerance(exercise: Exercise, data: Mapping[str, Tensor], name: str) -> tuple[float, float]:
    """``(rtol, atol)`` for output ``name`` of a case whose prepared data is ``data``:
    the exercise's floor plus :data:`BAND_FACTOR` times the reference's own error."""
    expected = data[f"expected/{name}"]
    atol = exercise.atol64 if expected.dtype == torch.float64 else exercise.atol
    band = data.get(f"band/{name}")
    return exercise.rtol, atol + (BAND_FACTOR * float(band) if band is not None else 0.0)


def compare_outputs(
    exercise: Exercise, data: Mapping[str, Tensor], actual: Mapping[str, Tensor]
) -> str | None:
    """None when every output of a case matches its prepared data (layout in
    :func:`prepare`); otherwise a message naming the first mismatch."""
    if exercise.compare is not None:
        return exercise.compare(dict(data), dict(actual))
    for name in exercise.outputs:
        rtol, atol = tolerance(exercise, data, name)
        problem = compare_tensors(data[f"expected/{name}"], actual[name], rtol, atol,
                                  data.get(f"truth/{name}"))
        if problem:
            return problem if len(exercise.outputs) == 1 else f"{name}: {problem}"
    return None


def error_ratio(exercise: Exercise, data: Mapping[str, Tensor], actual: Mapping[str, Tensor]) -> float:
    """The largest ``|actual - truth| / tolerance`` over the floating-point outputs of a
    case (a case passes at most 1); ``inf`` for a wrong shape, dtype, NaN or any
    difference in an exact output; 0 for an exact match."""
    worst = 0.0
    for name in exercise.outputs:
        want, got = data[f"expected/{name}"], actual[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            return math.inf
        truth = data.get(f"truth/{name}")
        if truth is None:
            if not torch.equal(got, want):
                return math.inf
            continue
        rtol, atol = tolerance(exercise, data, name)
        got = got.to(torch.float64)
        if bool(((got.isnan() != truth.isnan()) | (got.isinf() & (got != truth))).any()):
            return math.inf
        finite = truth.isfinite()
        err = (got - truth).abs()[finite]
        tol = atol + rtol * truth.abs()[finite]
        if err.numel():
            worst = max(worst, float((err / tol).max()))
    return worst


MistakeData = Mapping[str, Sequence["dict[str, Tensor] | None"]]


def judge(
    exercise: Exercise,
    cases: Sequence[Case],
    outcomes: Sequence[Outcome],
    data: Sequence[Mapping[str, Tensor]],
    mistakes: MistakeData | Callable[[], MistakeData],
) -> CheckResult:
    """Compare a student's outcomes with the prepared data and name likely mistakes.

    A pure function of its arguments: it never runs the reference or a mistake.

    Args:
        cases: the cases the outcomes belong to.
        outcomes: what the student's code produced on each case.
        data: the prepared data of each case (layout in :func:`prepare`).
        mistakes: ``{mistake name: prepared data per case (None where it raised)}``,
            or a function returning it, called only when a case fails.
    """
    catalogue: MistakeData | None = None
    forbidden = sorted({label for o in outcomes for label in o.forbidden})
    if any(o.not_implemented for o in outcomes):
        status = "not implemented"
    elif forbidden:
        status = "forbidden"
    else:
        status = "passed"
    results: list[CaseResult] = []
    matches: dict[str, int] = {}
    raised: list[int] = []
    for i, (case, outcome, want) in enumerate(zip(cases, outcomes, data, strict=True)):
        if outcome.not_implemented:
            results.append(CaseResult(case.name, False, "not implemented yet"))
            continue
        if outcome.error is not None or outcome.outputs is None:
            results.append(CaseResult(case.name, False, outcome.error or "no output"))
            raised.append(i)
            continue
        problem = compare_outputs(exercise, want, outcome.outputs)
        if problem is None:
            results.append(CaseResult(case.name, True))
            continue
        result = CaseResult(case.name, False, problem)
        if catalogue is None:
            catalogue = mistakes() if callable(mistakes) else mistakes
        for mistake in exercise.mistakes:
            theirs = catalogue[mistake.name][i]
            if theirs is not None and compare_outputs(exercise, theirs, outcome.outputs) is None:
                matches[mistake.name] = matches.get(mistake.name, 0) + 1
                result.mistake = result.mistake or mistake.name
        results.append(result)
    if raised and len(raised) < len(results) and exercise.mistakes:
        # An error where a catalogued mistake raises too (and only there) matches it:
        # a generate that never crops its context fails exactly on the long case.
        catalogue = catalogue or (mistakes() if callable(mistakes) else mistakes)
        for mistake in exercise.mistakes:
            theirs = catalogue[mistake.name]
            if [i for i, d in enumerate(theirs) if d is None] == raised:
                matches[mistake.name] = matches.get(mistake.name, 0) + len(raised)
                for i in raised:
                    results[i].mistake = results[i].mistake or mistake.name
    if status == "passed" and not all(r.passed for r in results):
        status = "failed"
    hints = []
    if status == "failed" and matches:
        best = max(matches.values())
        hints = [m for m in exercise.mistakes if matches.get(m.name) == best]
    return CheckResult(
        exercise=exercise.name,
        chapter=exercise.chapter,
        status=status,
        cases=results,
        max_points=exercise.points,
        hints=hints,
        forbidden=forbidden,
    )


# --------------------------------------------------------------------------- preparing


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
    except Exception:  # noqa: BLE001 - no float64 run: the band falls back to 0
        return None


# --------------------------------------------------------------------------- helpers for runs


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


from transformer_course.checks import stored  # noqa: E402 - stored data needs Case, defined above
