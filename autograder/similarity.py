"""Similarity report: pairs of students whose graded code is far more alike than the class's.

A report for a person to read, never a change to a grade.

What is compared. For each submission, the definitions the grader keeps (top-level
functions, classes and constants; see :mod:`autograder.reader`), the last binding of each
name winning as in a kernel. Each function, each method and each constant is one *unit*.
A unit becomes a token stream by a pre-order walk of its syntax tree, so formatting and
comments are gone; docstrings and type annotations are dropped; local names (arguments,
locals, the student's own helpers and attributes) all read ``V`` (or ``A`` for an
attribute), while names that mean the same thing for everyone stay: builtins, the
chapter's exercises and starter definitions, and imported modules written as their full
path (``F`` from ``import torch.nn.functional as F`` reads ``torch.nn.functional``).
String literals read ``S``.

Fingerprints. Every run of ``K`` consecutive tokens of a unit is hashed (a stable hash,
so reports are reproducible); winnowing keeps the smallest hash of each window of
``WINDOW`` hashes, which guarantees that any match of ``K + WINDOW - 1`` tokens is seen.
Fingerprints that also occur anywhere in the released starter notebook
(``notebooks/<chapter>.ipynb``: the exercise signatures, the code given around them) are
removed. Units are fingerprinted separately, so reordering functions changes nothing.

Weighting (as MOSS does): code that many students share is no evidence. A fingerprint
held by ``df`` of the chapter's ``N`` students weighs ``log(N / df) ** 2`` (squared, so that
a few rare lines two students share outweigh many half-common ones), and nothing at all
when more than ``COMMON_FRACTION`` of the class holds it. The similarity of two students
is the weighted Dice coefficient ``2 W(A & B) / (W(A) + W(B))`` of their fingerprint sets,
between 0 and 1. Only pairs that share a weighted fingerprint are scored, through an
index from fingerprint to students; every other pair scores 0.

Flagging rule. Per chapter, over all ``N (N - 1) / 2`` pairs (the zeros included), take
the median ``m`` and the median absolute deviation ``MAD``. A pair is reported when its
similarity is at least ``FLOOR`` and its robust z-score ``(s - m) / (1.4826 MAD)`` is at
least ``Z``, the scale never taken below ``MIN_SCALE`` (in a class where almost every pair
shares nothing, the MAD is 0). So a pair must be both alike in absolute terms and an
outlier against how alike that chapter's answers are anyway.
"""

from __future__ import annotations

import ast
import builtins
import csv
import hashlib
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from html import escape
from itertools import combinations
from pathlib import Path

from tqdm.auto import tqdm

from autograder.reader import Program, SubmissionError, read_submission

K = 10
WINDOW = 4
COMMON_FRACTION = 0.3
FLOOR = 0.65
Z = 5.0
MIN_SCALE = 0.05

STARTER = Path(__file__).resolve().parents[1] / "notebooks"
"""Folder of the released student notebooks, whose code is not evidence."""

_SKIPPED_FIELDS = frozenset({"annotation", "returns", "type_comment", "ctx", "type_params"})


@dataclass
class Unit:
    """One definition: ``tokens[i]`` comes from line ``lines[i]`` of ``source``."""

    name: str
    source: str
    tokens: list[str]
    lines: list[int]


@dataclass
class Code:
    """One student's graded code for a chapter, fingerprinted.

    Attributes:
        prints: ``{hash: [(unit index, first token), ...]}`` after winnowing and with the
            starter's fingerprints removed.
    """

    student: str
    units: list[Unit]
    prints: dict[int, list[tuple[int, int]]] = field(default_factory=dict)


@dataclass
class Pair:
    """A reported pair (``student_a < student_b``) and how far it stands out."""

    chapter: str
    student_a: str
    student_b: str
    similarity: float
    z: float


@dataclass
class ChapterStats:
    """A chapter's similarity distribution over all pairs and the threshold it gives."""

    chapter: str
    students: int
    pairs: int
    median: float
    mad: float
    threshold: float
    skipped: list[str]


# --------------------------------------------------------------------------- normalising


def _aliases(tree: ast.Module) -> dict[str, str]:
    """``{name bound by an import: full dotted path}``."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                found[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                found[a.asname or a.name] = f"{node.module}.{a.name}"
    return found


def _body(node: ast.AST) -> list[ast.stmt]:
    """Statements of a body without its docstring or any bare string."""
    return [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]


class _Normaliser:
    """Turns definitions into token streams; ``known`` names keep their spelling."""

    def __init__(self, known: set[str], aliases: dict[str, str], attributes: set[str]):
        self.known, self.aliases, self.attributes = known, aliases, attributes
        self.local: set[str] = set()

    def tokens(self, node: ast.AST) -> tuple[list[str], list[int]]:
        tokens: list[str] = []
        lines: list[int] = []
        # Names bound inside the unit are local whatever they shadow.
        self.local = {n.arg if isinstance(n, ast.arg) else n.id for n in ast.walk(node)
                      if isinstance(n, ast.arg) or isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.local.discard(node.name)
        self._walk(node, node.lineno, tokens, lines)
        return tokens, lines

    def _name(self, name: str) -> str:
        if name in self.local:
            return "V"
        if name in self.aliases:
            return self.aliases[name]
        return name if name in self.known else "V"

    def _walk(self, node: ast.AST, line: int, tokens: list[str], lines: list[int]) -> None:
        line = getattr(node, "lineno", line)

        def emit(token: str) -> None:
            tokens.append(token)
            lines.append(line)

        emit(type(node).__name__)
        if isinstance(node, ast.Name):
            emit(self._name(node.id))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            emit(self._name(node.name))
        elif isinstance(node, ast.Attribute):
            self._walk(node.value, line, tokens, lines)
            plain = isinstance(node.value, ast.Name) and self._name(node.value.id) == "V"
            emit("A" if plain and node.attr not in self.attributes else node.attr)
            return
        elif isinstance(node, ast.Constant):
            emit("S" if isinstance(node.value, (str, bytes)) else repr(node.value))
        elif isinstance(node, ast.keyword):
            emit(node.arg or "**")
        elif isinstance(node, ast.arg):
            emit("V")
        for name, value in ast.iter_fields(node):
            if name in _SKIPPED_FIELDS:
                continue
            if name == "body" and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                value = _body(node)
            if isinstance(value, ast.AST) and not isinstance(value, ast.expr_context):
                self._walk(value, line, tokens, lines)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self._walk(item, line, tokens, lines)


def _definitions(program: Program) -> tuple[dict[str, tuple[ast.stmt, str]], dict[str, str]]:
    """The kept non-import statements by name (the last binding wins) with their cell's
    source, and the import aliases of the whole program."""
    found: dict[str, tuple[ast.stmt, str]] = {}
    aliases: dict[str, str] = {}
    for cell in program.cells:
        if cell.error or not cell.keep:
            continue
        tree = ast.parse(cell.source)
        aliases.update(_aliases(ast.Module([tree.body[i] for i in cell.keep], [])))
        for index in cell.keep:
            node = tree.body[index]
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found[node.name] = (node, cell.source)
            else:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                found[ast.unparse(targets[0])] = (node, cell.source)
    return found, aliases


def units_of(program: Program, known: set[str], attributes: set[str],
             given: frozenset[str] = frozenset()) -> list[Unit]:
    """A program's definitions as units, in name order (methods one by one); a
    definition whose text is in ``given`` (the starter's, unchanged) is left out."""
    definitions, aliases = _definitions(program)
    normaliser = _Normaliser(known, aliases, attributes)
    units = []
    for name, (node, source) in sorted(definitions.items()):
        lines = source.split("\n")
        if _text(lines, node) in given:
            continue
        parts: list[tuple[str, ast.AST, int]] = [(name, node, node.end_lineno or node.lineno)]
        if isinstance(node, ast.ClassDef):
            methods = [s for s in _body(node) if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))]
            rest = [s for s in _body(node) if s not in methods]
            header = ast.ClassDef(node.name, node.bases, node.keywords, rest or [ast.Pass()],
                                  node.decorator_list, lineno=node.lineno)
            end = methods[0].lineno - 1 if methods else node.end_lineno or node.lineno
            parts = [(name, header, end)] + [(f"{name}.{m.name}", m, m.end_lineno or m.lineno)
                                             for m in methods]
        for label, part, last in parts:
            tokens, token_lines = normaliser.tokens(part)
            first = part.lineno
            units.append(Unit(label, "\n".join(lines[first - 1:last]), tokens,
                              [n - first for n in token_lines]))
    return units


def _text(lines: list[str], node: ast.stmt) -> str:
    """The lines of a top-level statement."""
    return "\n".join(lines[node.lineno - 1:node.end_lineno])


# --------------------------------------------------------------------------- fingerprints


def _hash(gram: list[str]) -> int:
    digest = hashlib.blake2b("\x1f".join(gram).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def kgrams(tokens: list[str], k: int = K) -> list[int]:
    """Hash of every run of ``k`` tokens (one hash of the whole stream when shorter)."""
    if len(tokens) <= k:
        return [_hash(tokens)] if tokens else []
    return [_hash(tokens[i:i + k]) for i in range(len(tokens) - k + 1)]


def winnow(hashes: list[int], window: int = WINDOW) -> list[tuple[int, int]]:
    """``(hash, position)`` of the rightmost smallest hash of each window, each once."""
    if len(hashes) <= window:
        low = min(hashes, default=None)
        return [] if low is None else [(low, len(hashes) - 1 - hashes[::-1].index(low))]
    picked: dict[int, int] = {}
    for start in range(len(hashes) - window + 1):
        span = hashes[start:start + window]
        low = min(span)
        position = start + window - 1 - span[::-1].index(low)
        picked[position] = low
    return [(h, p) for p, h in sorted(picked.items())]


def fingerprint(student: str, units: list[Unit], starter: set[int]) -> Code:
    """Winnowed fingerprints of each unit, less those found in the starter code."""
    code = Code(student, units)
    for index, unit in enumerate(units):
        for h, position in winnow(kgrams(unit.tokens)):
            if h not in starter:
                code.prints.setdefault(h, []).append((index, position))
    return code


# --------------------------------------------------------------------------- scoring


def _known_attributes() -> set[str]:
    import torch

    return set(dir(torch.Tensor)) | set(dir(torch.nn.Module)) | set(dir(builtins))


def starter_code(chapter: str, folder: Path = STARTER) -> tuple[set[str], set[int], frozenset[str]]:
    """Names the released notebook defines or imports, every k-gram hash of its code, and
    the text of each of its definitions (all empty when the notebook is missing)."""
    path = Path(folder) / f"{chapter}.ipynb"
    if not path.is_file():
        return set(), set(), frozenset()
    program = read_submission(path)
    definitions, aliases = _definitions(program)
    names = {name for name, (node, _) in definitions.items()
             if not isinstance(node, (ast.Assign, ast.AnnAssign))}
    names |= set(aliases)
    known = names | set(dir(builtins))
    hashes: set[int] = set()
    for unit in units_of(program, known, _known_attributes()):
        hashes.update(kgrams(unit.tokens))
    texts = frozenset(_text(source.split("\n"), node) for node, source in definitions.values())
    return names, hashes, texts


def score_chapter(codes: list[Code]) -> tuple[dict[tuple[int, int], float], dict[int, float]]:
    """Similarity of every pair of ``codes`` that shares a weighted fingerprint, and the
    weight of each fingerprint."""
    n = len(codes)
    holders: dict[int, list[int]] = defaultdict(list)
    for i, code in enumerate(codes):
        for h in code.prints:
            holders[h].append(i)
    cap = max(2, int(COMMON_FRACTION * n))
    weight = {h: math.log(n / len(who)) ** 2 if len(who) <= cap else 0.0 for h, who in holders.items()}
    total = [sum(weight[h] for h in code.prints) for code in codes]
    shared: dict[tuple[int, int], float] = defaultdict(float)
    for h, who in holders.items():
        if 1 < len(who) <= cap:
            for pair in combinations(who, 2):
                shared[pair] += weight[h]
    scores = {(a, b): 2 * w / (total[a] + total[b]) for (a, b), w in shared.items()
              if total[a] + total[b] > 0}
    return scores, weight


def flag(chapter: str, codes: list[Code], scores: dict[tuple[int, int], float],
         skipped: list[str]) -> tuple[list[Pair], ChapterStats]:
    """The pairs that stand out (see the module's docstring for the rule)."""
    n_pairs = len(codes) * (len(codes) - 1) // 2
    values = [0.0] * (n_pairs - len(scores)) + list(scores.values())
    median = statistics.median(values) if values else 0.0
    mad = statistics.median([abs(v - median) for v in values]) if values else 0.0
    scale = max(1.4826 * mad, MIN_SCALE)
    threshold = max(FLOOR, median + Z * scale)
    pairs = [Pair(chapter, *sorted((codes[a].student, codes[b].student)), round(s, 4),
                  round((s - median) / scale, 2))
             for (a, b), s in scores.items() if s >= threshold]
    pairs.sort(key=lambda p: (-p.similarity, p.student_a, p.student_b))
    return pairs, ChapterStats(chapter, len(codes), n_pairs, median, mad, threshold, skipped)


# --------------------------------------------------------------------------- the report


def read_class(submissions: list[tuple[str, str, Path]], starter: Path = STARTER
               ) -> dict[str, tuple[list[Code], list[str]]]:
    """``{chapter: (fingerprinted code per student, notes on unreadable files)}``."""
    attributes = _known_attributes()
    by_chapter: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for student, chapter, path in submissions:
        by_chapter[chapter].append((student, path))
    found = {}
    for chapter, entries in sorted(by_chapter.items()):
        names, hashes, given = starter_code(chapter, starter)
        known = names | set(dir(builtins))
        codes, skipped = [], []
        for student, path in tqdm(entries, desc=f"similarity {chapter}", disable=None, leave=False):
            try:
                units = units_of(read_submission(path), known, attributes, given)
            except SubmissionError as err:
                skipped.append(f"{student}: {err}")
                continue
            except Exception as err:  # one odd file must not stop the report
                skipped.append(f"{student}: {type(err).__name__}: {err}")
                continue
            codes.append(fingerprint(student, units, hashes))
        found[chapter] = (codes, skipped)
    return found


def similarity_report(submissions: list[tuple[str, str, Path]], out: Path,
                      starter: Path = STARTER) -> list[Pair]:
    """Write ``out/similarity.csv`` and ``out/similarity.html``; returns the reported pairs.

    Args:
        submissions: ``(student, chapter, path)`` of every submission of the class.
        out: the batch's output folder.
        starter: folder of the released notebooks whose code is removed before comparing.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reported: list[Pair] = []
    sections = []
    for chapter, (codes, skipped) in read_class(submissions, starter).items():
        scores, weight = score_chapter(codes)
        pairs, stats = flag(chapter, codes, scores, skipped)
        reported += pairs
        by_name = {c.student: c for c in codes}
        sections.append(_chapter_html(stats, pairs, by_name, weight))
    with open(out / "similarity.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["chapter", "student_a", "student_b", "similarity"])
        for p in reported:
            writer.writerow([p.chapter, p.student_a, p.student_b, f"{p.similarity:.3f}"])
    (out / "similarity.html").write_text(_page(sections, starter))
    return reported


def _matched_lines(code: Code, other: Code, weight: dict[int, float]) -> dict[int, set[int]]:
    """``{unit index: lines}`` of ``code`` covered by weighted fingerprints ``other`` shares."""
    marked: dict[int, set[int]] = defaultdict(set)
    for h, places in code.prints.items():
        if h in other.prints and weight.get(h, 0.0) > 0:
            for unit, start in places:
                lines = code.units[unit].lines
                marked[unit].update(lines[start:start + K])
    return marked


def _unit_html(unit: Unit, lines: set[int]) -> str:
    rows = [f"<mark>{escape(text) or ' '}</mark>" if i in lines else escape(text)
            for i, text in enumerate(unit.source.split("\n"))]
    return f"<div class='unit'><b>{escape(unit.name)}</b><pre>" + "\n".join(rows) + "</pre></div>"


def _chapter_html(stats: ChapterStats, pairs: list[Pair], codes: dict[str, Code],
                  weight: dict[int, float]) -> str:
    parts = [f"<h2>{escape(stats.chapter)}</h2>",
             f"<p>{stats.students} students, {stats.pairs} pairs; median similarity "
             f"{stats.median:.3f}, MAD {stats.mad:.3f}; reported at {stats.threshold:.3f} or "
             f"more: <b>{len(pairs)}</b> pair{'s' * (len(pairs) != 1)}.</p>"]
    for note in stats.skipped:
        parts.append(f"<p class='note'>Not compared: {escape(note)}</p>")
    for p in pairs:
        a, b = codes[p.student_a], codes[p.student_b]
        marks_a, marks_b = _matched_lines(a, b, weight), _matched_lines(b, a, weight)
        names = sorted({a.units[i].name for i in marks_a} | {b.units[i].name for i in marks_b})
        parts.append(f"<h3>{escape(p.student_a)} &harr; {escape(p.student_b)}: "
                     f"{p.similarity:.2f} <small>(robust z {p.z:g})</small></h3>")
        parts.append(f"<table><tr><th>{escape(p.student_a)}</th><th>{escape(p.student_b)}</th></tr>")
        for name in names:
            cells = []
            for code, marks in ((a, marks_a), (b, marks_b)):
                found = [i for i, u in enumerate(code.units) if u.name == name]
                cells.append(_unit_html(code.units[found[0]], marks.get(found[0], set()))
                             if found else "")
            parts.append(f"<tr><td>{cells[0]}</td><td>{cells[1]}</td></tr>")
        parts.append("</table>")
    return "\n".join(parts)


def _page(sections: list[str], starter: Path) -> str:
    head = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Similarity report</title>"
            "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;"
            "width:100%;table-layout:fixed}td,th{border:1px solid #ccc;vertical-align:top;"
            "padding:.3em;text-align:left}pre{margin:.2em 0;white-space:pre-wrap;font-size:85%}"
            "mark{background:#ffe08a}.note{color:#8a5a00}</style></head><body>")
    intro = ("<h1>Similarity report</h1><p>Pairs of students whose graded code is far more "
             "alike than the rest of the class's, after removing comments, docstrings, "
             "formatting, local names and the code given in the released notebooks "
             f"({escape(starter.name)}/&lt;chapter&gt;.ipynb); code many students share counts "
             "for little. "
             "Highlighted lines hold the rare code both share. This report is evidence for a "
             "person to weigh, never a verdict: it changes no grade.</p>")
    return head + intro + "\n".join(sections) + "</body></html>\n"
