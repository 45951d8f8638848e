"""The reports read the results' structured fields and show each exercise through the
one renderer, the same words a notebook's check shows."""

from pathlib import Path

from autograder.report import class_summary, student_html, student_markdown, text_summary
from autograder.results import build_result, exercise_result, result_problem
from transformer_course.checks.exercise import Mistake
from transformer_course.checks.render import as_html, as_markdown
from transformer_course.checks.results import CaseResult, CheckResult, Status

MISSING = "causal_mask was not found in the submission; define a function or class named causal_mask"


def _graded() -> dict:
    wrong = CheckResult("softmax", "01_attention", Status.FAILED,
                        [CaseResult("2-D", True), CaseResult("large <logits>", False, "NaN at [0, 1]",
                                                             "no max subtraction")],
                        1, hints=[Mistake("no max subtraction", "subtract the maximum", None)])
    missing = CheckResult("causal_mask", "01_attention", Status.FAILED,
                          [CaseResult(f"case {i}", False, MISSING) for i in range(3)], 1, note=MISSING)
    right = CheckResult("padding_mask", "01_attention", Status.PASSED,
                        [CaseResult("a", True), CaseResult("hidden: a", True)], 1)
    return build_result(Path("01_attention.ipynb"), "01_attention", "0" * 64, 1, [wrong, missing, right],
                        flags={}, notes=["cell 3 was skipped"], problems=[], seconds=1.0)


def test_each_test_keeps_its_whole_result():
    result = _graded()
    back = [exercise_result(test) for test in result["tests"]]
    assert [r.exercise for r in back] == ["softmax", "causal_mask", "padding_mask"]
    assert back[0].hints[0].name == "no max subtraction" and back[0].cases[1].mistake == "no max subtraction"
    assert result["output"].splitlines() == ["01_attention: 1.5 / 3 points", "Note: cell 3 was skipped"]


def test_reports_render_exercises_with_the_one_renderer():
    result = _graded()
    markdown = student_markdown("ada", {"01_attention": result})
    html = student_html("ada", {"01_attention": result})
    for test in result["tests"]:
        assert as_markdown(exercise_result(test), graded=True) in markdown
        assert as_html(exercise_result(test), graded=True) in html
    assert "passed all 2 graded cases (1 visible, 1 hidden)" in markdown and "visible cases;" not in markdown
    assert "large \\<logits\\>" in markdown and "large &lt;logits&gt;" in html and "<logits>" not in html
    assert "> Note: cell 3 was skipped" in markdown


def test_one_reason_for_every_case_shows_the_reason_once():
    markdown = as_markdown(exercise_result(_graded()["tests"][1]))
    assert markdown.count("was not found") == 1 and "| case |" not in markdown


def test_terminal_summary_and_class_summary_use_the_exercise_names():
    result = _graded()
    lines = text_summary(result).splitlines()
    assert lines[0] == "01_attention: 1.5 / 3 points"
    assert lines[2].split() == ["[FAIL]", "softmax", "0.5", "/", "1"]
    grades = {"ada": {"01_attention": result}, "bo": {"01_attention": result}}
    summary = class_summary(grades, ["01_attention"])
    assert "- **softmax**: 2 failed; no max subtraction (2)" in summary
    assert "- **causal_mask**: 2 failed; failed (2)" in summary


def test_what_the_child_wrote_reaches_a_result_only_as_bounded_text():
    hostile = [{"cell": ["x"] * 3, "line": {"a": 1}, "error": "e" * 10**6}, "not a dict", 7] * 30
    result = build_result(Path("01_attention.ipynb"), "01_attention", "0" * 64, 1, [],
                          flags={"softmax": {"nested": []}, 3: "x" * 10**4}, notes=["fine", ["odd"]],
                          problems=hostile, seconds=1.0)
    extra = result["extra_data"]
    assert extra["flags"] == {"softmax": "dict", "3": "x" * 200}
    assert extra["notes"][:2] == ["fine", "list"] and len(extra["notes"]) == 2 + 20
    assert extra["notes"][2] == "list, line dict: " + "e" * 2000
    assert result_problem(result) is None


def test_a_result_read_back_is_checked_before_the_reports_use_it():
    good = _graded()
    assert result_problem(good) is None
    broken = [
        [], {"score": "6"}, {**good, "score": True}, {**good, "tests": {}},
        {**good, "extra_data": {**good["extra_data"], "notes": [1]}},
        {**good, "extra_data": {**good["extra_data"], "flags": {"a": None}}},
        {**good, "tests": [{**good["tests"][0], "status": "great"}]},
        {**good, "tests": [{**good["tests"][0], "extra_data": {"exercise": "softmax"}}]},
        {**good, "tests": [{**good["tests"][0], "extra_data": {**good["tests"][0]["extra_data"],
                                                               "cases": [{"name": ["x"], "passed": 1}]}}]},
    ]
    for result in broken:
        assert result_problem(result) is not None, result
