"""The pins: constraints.txt (pip) and environment.yml (conda, Binder) agree, and every
dependency the package declares is pinned."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[_name(name)] = version
    return pins


def _environment_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {_name(p): p.split("==")[1] for p in pip_section}


def test_environment_yml_pins_equal_constraints():
    constraints, environment = _constraints(), _environment_pins()
    assert environment, "environment.yml lists no pip packages"
    for name, version in environment.items():
        pinned = constraints.get(name)
        assert pinned == version, f"{name}: environment.yml has {version}, constraints.txt {pinned}"


def test_every_declared_dependency_is_pinned_in_both():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    constraints, environment = _constraints(), _environment_pins()
    assert declared <= constraints.keys(), declared - constraints.keys()
    assert declared <= environment.keys(), declared - environment.keys()


def test_torch_is_the_cpu_build_on_disk():
    assert _constraints()["torch"] == "2.13.0"
