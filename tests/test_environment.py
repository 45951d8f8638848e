"""The pins: constraints.txt (pip) and environment.yml (conda, Binder) agree, every
dependency the package declares is pinned, and torch comes from PyTorch's CPU wheel index."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from autograder.gradescope import CPU_INDEX
from transformer_course.pins import normalize, read_pins

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return normalize(re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0])


def _pip_section() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))


def _environment_pins() -> dict[str, str]:
    return {_name(p): p.split("==")[1] for p in _pip_section() if not p.startswith("-")}


def test_environment_yml_pins_equal_constraints():
    constraints, environment = read_pins(ROOT), _environment_pins()
    assert environment, "environment.yml lists no pip packages"
    for name, version in environment.items():
        pinned = constraints.get(name)
        assert pinned == version, f"{name}: environment.yml has {version}, constraints.txt {pinned}"


def test_every_declared_dependency_is_pinned_in_both():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    constraints, environment = read_pins(ROOT), _environment_pins()
    assert declared <= constraints.keys(), declared - constraints.keys()
    assert declared <= environment.keys(), declared - environment.keys()


def test_environment_yml_takes_torch_from_the_cpu_index():
    options = [p.split() for p in _pip_section() if p.startswith("-")]
    # An extra index, not the only one: the rest of the pins come from PyPI.
    assert ["--extra-index-url", CPU_INDEX] in options, options
    # Unlabelled, so that macOS (whose CPU build has no +cpu label) resolves it too.
    assert _environment_pins()["torch"] == read_pins(ROOT)["torch"]


def test_postbuild_installs_no_torch_and_refuses_a_cuda_build(tmp_path):
    lines = (ROOT / "postBuild").read_text().splitlines()
    installs = [line for line in lines if "pip install" in line]
    assert installs and not any("torch" in line for line in installs), installs
    check = next(line for line in lines if line.startswith("python -c"))
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_ / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"}
    # The CPU torch of this environment passes; a CUDA build (a stand-in module) stops it.
    assert subprocess.run(["bash", "-c", check], env=env).returncode == 0
    (tmp_path / "fake" / "torch").mkdir(parents=True)
    (tmp_path / "fake" / "torch" / "__init__.py").write_text(
        "import types\n__version__ = '2.13.0'\nversion = types.SimpleNamespace(cuda='12.8')\n")
    done = subprocess.run(["bash", "-c", check], env={**env, "PYTHONPATH": str(tmp_path / "fake")},
                          capture_output=True, text=True)
    assert done.returncode == 1 and "CUDA build" in done.stderr, done.stderr
