"""The one renderer of an exercise's result (text, HTML, Markdown, grader feedback) and
the result's JSON round trip."""

import json
from html import escape

import pytest

from transformer_course.checks.exercise import Mistake
from transformer_course.checks.render import _md, as_html, as_markdown, as_text, feedback, headline
from transformer_course.checks.results import CaseResult, CheckResult, Status

HINT = Mistake("no scaling", "Divide by sqrt(d_k) <before> the softmax.", None)


def failed() -> CheckResult:
    return CheckResult(
        exercise="attention_scores", chapter="01_attention", status=Status.FAILED,
        cases=[CaseResult("q (5, 8) & k (5, 8)", True),
               CaseResult("batch <2>", False, "values differ: got *1* | want _2_", "no scaling")],
        max_points=2, hints=[HINT],
    )


def test_status_values_are_the_strings_results_store():
    assert [str(s) for s in Status] == ["passed", "failed", "not implemented", "forbidden", "reference"]
    assert Status.NOT_IMPLEMENTED == "not implemented"
    result = CheckResult("softmax", "01_attention", "forbidden", [], 1)
    assert result.status is Status.FORBIDDEN


def test_check_result_round_trips_through_json():
    result = failed()
    result.note = "one note"
    result.forbidden = ["torch.softmax"]
    back = CheckResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.status is Status.FAILED
    assert back.cases == result.cases
    assert [(h.name, h.hint) for h in back.hints] == [(HINT.name, HINT.hint)]
    assert (back.exercise, back.chapter, back.max_points, back.forbidden, back.note) == (
        "attention_scores", "01_attention", 2, ["torch.softmax"], "one note")
    assert back.to_dict() == result.to_dict()
    assert back.score == result.score == 1.0


def test_text_lists_every_case_of_a_failed_exercise():
    text = as_text(failed())
    assert text.splitlines() == [
        "FAIL attention_scores: 1 of 2 cases passed.",
        "  Likely mistake: Divide by sqrt(d_k) <before> the softmax.",
        "  [ok  ] q (5, 8) & k (5, 8)",
        "  [FAIL] batch <2>: values differ: got *1* | want _2_",
    ]
    assert str(failed()) == text == repr(failed())


def test_text_of_a_passed_exercise_is_one_line():
    result = CheckResult("softmax", "01_attention", Status.PASSED, [CaseResult("a", True)] * 3, 1)
    assert as_text(result) == "PASS softmax: passed all 3 visible cases; the grader also runs hidden ones."


def test_the_grader_says_its_cases_include_hidden_ones():
    cases = [CaseResult("a", True)] * 2 + [CaseResult("hidden: a", True)] * 3
    result = CheckResult("softmax", "01_attention", Status.PASSED, cases, 1)
    graded = "softmax: passed all 5 graded cases (2 visible, 3 hidden)."
    assert feedback(result) == graded
    assert f"**PASS** {_md(graded)} (1 / 1 point)" == as_markdown(result, graded=True)
    assert escape(graded) in as_html(result, graded=True)
    assert "visible cases; the grader also runs hidden ones" in as_html(result)


def test_html_escapes_every_text_and_shows_points():
    html = as_html(failed())
    assert failed()._repr_html_() == html
    assert "<before>" not in html and "&lt;before&gt;" in html
    assert "batch &lt;2&gt;" in html and "q (5, 8) &amp; k (5, 8)" in html
    assert "1 / 2 points" in html
    assert "#cf222e" in html  # failed: red


@pytest.mark.parametrize("status, colour", [(Status.PASSED, "#1a7f37"), (Status.NOT_IMPLEMENTED, "#9a6700"),
                                            (Status.FORBIDDEN, "#cf222e")])
def test_html_colour_follows_the_status(status, colour):
    result = CheckResult("softmax", "01_attention", status, [CaseResult("a", status == Status.PASSED)], 1,
                         forbidden=["torch.softmax"])
    assert f"border-left:4px solid {colour}" in as_html(result)


def test_markdown_escapes_markup_and_tabulates_cases():
    lines = as_markdown(failed()).splitlines()
    assert lines[0] == "**FAIL** attention\\_scores: 1 of 2 cases passed. (1 / 2 points)"
    assert "- *Likely mistake:* Divide by sqrt(d\\_k) \\<before\\> the softmax." in lines
    assert lines[-1] == "| ✘ | batch \\<2\\> | values differ: got \\*1\\* \\| want \\_2\\_ |"
    assert lines[-2] == "| ✔ | q (5, 8) & k (5, 8) |  |"


def test_feedback_names_the_mistake_each_case_matches():
    assert feedback(failed()).splitlines() == [
        "attention_scores: 1 of 2 cases passed.",
        "Likely mistake: Divide by sqrt(d_k) <before> the softmax.",
        "  [ok]   q (5, 8) & k (5, 8)",
        "  [FAIL] batch <2>: values differ: got *1* | want _2_ (matches the known mistake 'no scaling')",
    ]


def test_feedback_is_the_note_when_it_explains_every_case():
    note = "timed out after 10 s"
    result = CheckResult("GPT", "06_llm", Status.FAILED, [CaseResult("a", False, note)] * 2, 2, note=note)
    assert feedback(result) == note
    reference = CheckResult("GPT", "06_llm", Status.REFERENCE, [CaseResult("a", True)], 2,
                            note="calls the course's reference solution")
    assert feedback(reference) == "calls the course's reference solution"
    assert reference.score == 0.0


def test_headline_of_a_forbidden_call_names_it():
    result = CheckResult("softmax", "01_attention", Status.FORBIDDEN, [CaseResult("a", True)], 1,
                         forbidden=["torch.softmax", "F.softmax"])
    assert headline(result).startswith("softmax: uses torch.softmax, F.softmax, which")
    assert as_text(result).startswith("FAIL softmax: uses")
