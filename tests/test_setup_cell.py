"""The notebooks' setup cell, run the way a hosted kernel (Colab, a bare JupyterHub) runs
it: in a fresh virtual environment without the course, offline.

The course comes from a wheel built here. The environment sees this one's installed
packages (torch, numpy, ... and the weight packages, which cannot be downloaded here)
through a ``.pth`` line, like the packages a hosted kernel comes with: the cell must
keep them and install only the course.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from transformer_course.release import SETUP_KEY, release_setup

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))
COURSE_FILES = ("__editable__", "transformers_from_scratch")  # the course's own install here


def _code_cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_first_code_cell_is_the_setup_cell_of_this_release(path):
    first = _code_cells(path)[0]
    assert first.metadata.get(SETUP_KEY) and "remove-cell" in first.metadata["tags"]
    assert first.source == release_setup(ROOT)
    assert "git+https://github.com/" in first.source and "@v" in first.source


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{command[:4]}...:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.notebook
def test_setup_cell_installs_the_course_in_a_fresh_environment(tmp_path):
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "--no-index", "--wheel-dir", str(wheels), str(ROOT)])
    (wheel,) = wheels.glob("transformers_from_scratch-*.whl")

    # What the kernel already has: every package installed here but the course.
    here = Path(sysconfig.get_paths()["purelib"])
    preinstalled = tmp_path / "preinstalled"
    preinstalled.mkdir()
    for entry in here.iterdir():
        if not entry.name.startswith(COURSE_FILES) and entry.suffix != ".pth":
            (preinstalled / entry.name).symlink_to(entry)
    fresh = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", str(fresh)])
    python = str(fresh / "bin" / "python")
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([python, "-c", purelib]).stdout.strip())
    (site / "preinstalled.pth").write_text(f"{preinstalled}\n")
    probe = "import importlib.util as u; print(u.find_spec('transformer_course') is None)"
    assert _run([python, "-c", probe], cwd=tmp_path).stdout.strip() == "True"

    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "MPLBACKEND": "Agg"}
    cell = release_setup(ROOT, source=str(wheel))
    _run([python, "-c", cell], cwd=tmp_path, env=env)
    installed = sorted(p.name for p in site.iterdir())
    assert any(name.startswith("transformers_from_scratch") for name in installed), installed
    assert not any(name.startswith(("torch", "numpy")) for name in installed), "torch or numpy reinstalled"
    _run([python, "-c", cell], cwd=tmp_path, env={**env, "PIP_FIND_LINKS": "/nonexistent"})  # a no-op now

    # Each notebook's imports (the code cell after the setup cell) in that environment.
    imports = [_code_cells(path)[1].source for path in NOTEBOOKS if path.parent.name == "notebooks"]
    script = "\n".join(["import transformer_course, torch", *imports,
                        "print(transformer_course.__file__, torch.__file__)"])
    where = _run([python, "-c", script], cwd=tmp_path, env=env).stdout.splitlines()[-1].split()
    assert where[0].startswith(str(site)) and where[1].startswith(str(preinstalled)), where
