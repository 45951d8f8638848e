"""Gradebooks a learning-management system imports: Canvas and Moodle CSV files.

``canvas.csv`` follows Canvas's gradebook import format: the columns ``Student``, ``ID``,
``SIS User ID``, ``SIS Login ID`` and ``Section``, then one column per assignment (here,
per chapter), and a second row ``Points Possible`` with each assignment's maximum.
``moodle.csv`` follows Moodle's "Import grades from CSV": one identifier column that the
import maps to a user field (``Email address``, ``ID number`` or ``Username``), then one
column per grade item. Points are the chapter scores, out of the rubric's total.

A roster (``--roster roster.csv``) maps the student folder names to the LMS: required
columns ``student`` (the folder name), ``lms_id`` (Canvas's user id, Moodle's ID number)
and ``name`` (the display name); optional ``email``, ``section`` and ``sis_id``. Without a
roster the folder name is the identifier (Canvas's SIS Login ID, Moodle's Username).
Students in the submissions but not in the roster keep their row (without an LMS id), and
students of the roster with no submission get an empty row; both are listed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from autograder import GradingError
from transformer_course.checks.registry import exercises

REQUIRED = ("student", "lms_id", "name")
CANVAS_IDENTITY = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]


@dataclass
class Person:
    student: str  # folder name
    lms_id: str = ""
    name: str = ""
    email: str = ""
    section: str = ""
    sis_id: str = ""


def read_roster(path: Path) -> dict[str, Person]:
    """``{folder name: Person}`` from a roster CSV.

    Raises:
        GradingError: when the file is missing, lacks a required column or names a
            student twice.
    """
    path = Path(path)
    if not path.is_file():
        raise GradingError(f"roster {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise GradingError(
                f"roster {path} lacks the column(s) {', '.join(missing)}; its header must "
                f"hold {', '.join(REQUIRED)} (and optionally email, section, sis_id)")
        people: dict[str, Person] = {}
        for number, row in enumerate(reader, 2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if not row["student"]:
                continue
            if row["student"] in people:
                raise GradingError(f"roster {path} line {number}: {row['student']!r} appears twice")
            people[row["student"]] = Person(**{k: row.get(k, "") for k in Person.__dataclass_fields__})
    return people


def possible_points(chapter: str) -> float:
    """The rubric's total for a chapter."""
    return sum(e.points for e in exercises(chapter))


def match_roster(students: list[str], roster: dict[str, Person] | None
                 ) -> tuple[list[Person], list[str], list[str]]:
    """Everyone to export (graded students first, then roster-only ones), the graded
    students the roster lacks, and the roster's students with no submission."""
    roster = roster if roster is not None else {}
    people = [roster.get(s, Person(s, name=s)) for s in students]
    if not roster:
        return people, [], []
    not_in_roster = [s for s in students if s not in roster]
    no_submission = [s for s in roster if s not in set(students)]
    return people + [roster[s] for s in no_submission], not_in_roster, no_submission


def _score(grades: dict[str, dict[str, dict]], student: str, chapter: str) -> str:
    result = grades.get(student, {}).get(chapter)
    return "" if result is None else f"{result['score']:g}"


def canvas_rows(people: list[Person], grades: dict[str, dict[str, dict]],
                chapters: list[str], roster: bool) -> list[list[str]]:
    """Canvas's import CSV as rows: header, ``Points Possible``, one row per student."""
    rows = [CANVAS_IDENTITY + chapters,
            ["Points Possible", "", "", "", ""] + [f"{possible_points(c):g}" for c in chapters]]
    for p in people:
        login = "" if roster else p.student
        rows.append([p.name or p.student, p.lms_id, p.sis_id, login, p.section]
                    + [_score(grades, p.student, c) for c in chapters])
    return rows


def moodle_rows(people: list[Person], grades: dict[str, dict[str, dict]],
                chapters: list[str], roster: bool) -> list[list[str]]:
    """Moodle's grade import CSV as rows: identifier column(s), then a column per chapter."""
    with_email = roster and any(p.email for p in people)
    identity = (["Email address"] if with_email else []) + (["ID number"] if roster else ["Username"])
    rows = [identity + chapters]
    for p in people:
        ids = ([p.email] if with_email else []) + [p.lms_id if roster else p.student]
        rows.append(ids + [_score(grades, p.student, c) for c in chapters])
    return rows
