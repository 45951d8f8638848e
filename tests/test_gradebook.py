"""Canvas and Moodle gradebooks: their column layout, and a roster that does not match
the submissions reported by name."""

import csv
from pathlib import Path

import pytest

from autograder import GradingError
from autograder.batch import write_reports
from autograder.gradebook import read_roster
from transformer_course.checks.rubric import rubric

CHAPTERS = ["01_attention", "02_multi_head_attention"]


def _result(chapter: str, score: float) -> dict:
    maximum = sum(rubric()[chapter].values())
    return {"score": score, "max_score": maximum, "tests": [],
            "output": f"{chapter}: {score:g} / {maximum:g} points",
            "extra_data": {"chapter": chapter, "notes": [], "flags": {}}}


GRADES = {
    "ada": {"01_attention": _result("01_attention", 6), "02_multi_head_attention": _result(
        "02_multi_head_attention", 3.5)},
    "bob": {"01_attention": _result("01_attention", 2.5)},
}


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_without_a_roster_the_folder_name_identifies_the_student(tmp_path):
    write_reports(tmp_path, GRADES, None, log=lambda _: None)
    canvas = _rows(tmp_path / "canvas.csv")
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *CHAPTERS]
    points = [str(sum(rubric()[c].values())) for c in CHAPTERS]
    assert canvas[1] == ["Points Possible", "", "", "", "", *points]
    assert canvas[2] == ["ada", "", "", "ada", "", "6", "3.5"]
    assert canvas[3] == ["bob", "", "", "bob", "", "2.5", ""]
    moodle = _rows(tmp_path / "moodle.csv")
    assert moodle == [["Username", *CHAPTERS], ["ada", "6", "3.5"], ["bob", "2.5", ""]]
    assert not (tmp_path / "roster_mismatch.txt").exists()


def test_roster_maps_students_and_reports_each_mismatch_by_name(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("student,lms_id,name,email,section\n"
                      "ada,1001,Ada Lovelace,ada@uni.edu,A\n"
                      "zoe,1003,Zoe Nobody,zoe@uni.edu,B\n")
    log: list[str] = []
    write_reports(tmp_path, GRADES, read_roster(roster), log=log.append)
    canvas = _rows(tmp_path / "canvas.csv")
    assert canvas[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert canvas[2] == ["Ada Lovelace", "1001", "", "", "A", "6", "3.5"]
    assert canvas[3] == ["bob", "", "", "", "", "2.5", ""]  # kept, without an LMS id
    assert canvas[4] == ["Zoe Nobody", "1003", "", "", "B", "", ""]  # kept, no grades
    moodle = _rows(tmp_path / "moodle.csv")
    assert moodle[0] == ["Email address", "ID number", *CHAPTERS]
    assert moodle[1] == ["ada@uni.edu", "1001", "6", "3.5"]
    mismatch = (tmp_path / "roster_mismatch.txt").read_text()
    assert "not in the roster" in mismatch and ": bob" in mismatch
    assert "no submission" in mismatch and ": zoe" in mismatch and "ada" not in mismatch
    assert any(line.endswith("bob") for line in log) and any(line.endswith("zoe") for line in log)
    grades = _rows(tmp_path / "grades.csv")
    assert [r[0] for r in grades] == ["student", "ada", "bob"]  # grades.csv is unchanged


def test_a_bad_roster_says_what_to_fix(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("student,name\nada,Ada\n")
    with pytest.raises(GradingError, match="lms_id"):
        read_roster(roster)
    roster.write_text("student,lms_id,name\nada,1,Ada\nada,2,Ada again\n")
    with pytest.raises(GradingError, match="'ada' appears twice"):
        read_roster(roster)
    with pytest.raises(GradingError, match="does not exist"):
        read_roster(tmp_path / "missing.csv")
