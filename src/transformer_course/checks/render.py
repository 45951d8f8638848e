"""The one place that turns an exercise's :class:`~results.CheckResult` into words: plain
text (a terminal, ``print``), HTML (Jupyter), Markdown, and the grader's feedback."""

from __future__ import annotations

from html import escape

from transformer_course.checks.results import CheckResult, Status

_COLOURS = {Status.PASSED: "#1a7f37", Status.NOT_IMPLEMENTED: "#9a6700"}
_FAIL_COLOUR = "#cf222e"


def headline(result: CheckResult, graded: bool = False) -> str:
    """One sentence: how the exercise went.

    ``graded`` is False for a notebook's ``check()``, which runs the visible cases only:
    a pass then says so, because the grader also runs hidden cases and a function can
    pass the first and fail the second. The grader's feedback passes True: it counts
    the visible and the hidden cases it ran.
    """
    if result.status == Status.PASSED:
        if graded:
            hidden = sum(case.hidden for case in result.cases)
            kinds = ", ".join(f"{n} {kind}" for n, kind in
                              ((len(result.cases) - hidden, "visible"), (hidden, "hidden")) if n)
            return f"{result.exercise}: passed all {len(result.cases)} graded cases ({kinds})."
        return (f"{result.exercise}: passed all {len(result.cases)} visible cases; "
                "the grader also runs hidden ones.")
    if result.status == Status.NOT_IMPLEMENTED:
        return f"{result.exercise}: not implemented yet (it still raises NotImplementedError)."
    if result.status == Status.REFERENCE:
        return f"{result.exercise}: calls the reference solution instead of your own code."
    if result.status == Status.FORBIDDEN:
        used = ", ".join(result.forbidden)
        return (
            f"{result.exercise}: uses {used}, which this exercise asks you to write "
            "yourself. Replace it with your own code (earlier exercises are fine)."
        )
    return f"{result.exercise}: {result.n_passed} of {len(result.cases)} cases passed."


def _one_reason(result: CheckResult) -> bool:
    """Whether every case failed for the note's one reason (missing, timed out, crashed):
    then the note says it all."""
    return bool(result.note) and all(not c.passed and c.message == result.note for c in result.cases)


def _cases_shown(result: CheckResult) -> bool:
    """Whether to list the cases one by one: a failed exercise whose cases do not all
    fail for one reason."""
    return result.status == Status.FAILED and not _one_reason(result)


def _mark(result: CheckResult) -> str:
    return "PASS" if result.passed else "FAIL"


def _points(result: CheckResult) -> str:
    return f'{result.score:.4g} / {result.max_points:g} point{"" if result.max_points == 1 else "s"}'


def as_text(result: CheckResult) -> str:
    """The result as plain text: the headline, the note, likely mistakes and, for a
    failed exercise, every case."""
    lines = [f"{_mark(result)} {headline(result)}"]
    if result.note:
        lines.append(f"  {result.note}")
    lines += [f"  Likely mistake: {hint.hint}" for hint in result.hints]
    if _cases_shown(result):
        for case in result.cases:
            mark = "ok  " if case.passed else "FAIL"
            lines.append(f"  [{mark}] {case.name}" + ("" if case.passed else f": {case.message}"))
    return "\n".join(lines)


def as_html(result: CheckResult, graded: bool = False) -> str:
    """The result as an HTML block (what a notebook shows, and the grader's HTML report
    with ``graded=True``: see :func:`headline`); every text is escaped."""
    colour = _COLOURS.get(result.status, _FAIL_COLOUR)
    icon = "&#10004;" if result.passed else "&#10008;"
    parts = [
        f'<div style="border-left:4px solid {colour};padding:4px 10px;margin:4px 0">',
        f'<b style="color:{colour}">{icon} {_mark(result)} {escape(headline(result, graded))}</b>',
        f'<span style="float:right">{_points(result)}</span>',
    ]
    if result.note:
        parts.append(f"<div>{escape(result.note)}</div>")
    parts += [f"<div><b>Likely mistake:</b> {escape(hint.hint)}</div>" for hint in result.hints]
    if _cases_shown(result):
        rows = "".join(
            f"<tr><td>{'&#10004;' if c.passed else '&#10008;'}</td>"
            f"<td>{escape(c.name)}</td><td>{escape(c.message)}</td></tr>"
            for c in result.cases
        )
        parts.append(f'<table style="font-size:90%">{rows}</table>')
    parts.append("</div>")
    return "".join(parts)


def _md(text: str) -> str:
    """``text`` safe inside a Markdown table cell or line: no markup, no line break."""
    for char in "\\`*_[]<>|":
        text = text.replace(char, "\\" + char)
    return " ".join(text.split())


def as_markdown(result: CheckResult, graded: bool = False) -> str:
    """The result as Markdown: a bold headline with the points, then the note, likely
    mistakes and, for a failed exercise, a table of the cases (``graded``: see
    :func:`headline`)."""
    lines = [f"**{_mark(result)}** {_md(headline(result, graded))} ({_points(result)})"]
    if result.note:
        lines += ["", _md(result.note)]
    lines += [f"- *Likely mistake:* {_md(hint.hint)}" for hint in result.hints]
    if _cases_shown(result):
        lines += ["", "| | case | problem |", "|---|---|---|"]
        lines += [f"| {'✔' if c.passed else '✘'} | {_md(c.name)} | {_md(c.message)} |"
                  for c in result.cases]
    return "\n".join(lines)


def feedback(result: CheckResult) -> str:
    """The grader's feedback on one exercise: the note alone when it is the one reason
    for every case (missing, timed out, crashed, the reference called), otherwise the
    headline, likely mistakes and, for a failed exercise, every case with the known
    mistake it matches."""
    if result.status == Status.REFERENCE or _one_reason(result):
        return result.note
    lines = [headline(result, graded=True)]
    lines += [f"Likely mistake: {hint.hint}" for hint in result.hints]
    if _cases_shown(result):
        for case in result.cases:
            if case.passed:
                lines.append(f"  [ok]   {case.name}")
            else:
                extra = f" (matches the known mistake '{case.mistake}')" if case.mistake else ""
                lines.append(f"  [FAIL] {case.name}: {case.message}{extra}")
    return "\n".join(lines)
