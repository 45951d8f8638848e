"""read_pins: the one reader of constraints.txt."""

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from transformer_course.pins import normalize, read_pins


def test_reads_exact_pins_and_skips_comments(tmp_path):
    text = "# pins\n\nTorch==2.13.0\nruamel.yaml==0.18.6  # yaml\nfoo_bar==1\n"
    (tmp_path / "constraints.txt").write_text(text)
    assert read_pins(tmp_path) == {"torch": "2.13.0", "ruamel-yaml": "0.18.6", "foo-bar": "1"}


def test_a_range_is_refused_with_its_line(tmp_path):
    (tmp_path / "constraints.txt").write_text("torch==2.13.0\nnumpy>=2\n")
    with pytest.raises(ValueError, match=r"line 2: 'numpy>=2' is not an exact pin"):
        read_pins(tmp_path)


def test_normalize_follows_pip():
    assert normalize(" Jupyter_Book.Extras ") == "jupyter-book-extras"


def test_a_package_pinned_twice_is_refused(tmp_path):
    (tmp_path / "constraints.txt").write_text("torch==2.13.0\nTorch==2.14.1\n")
    with pytest.raises(ValueError, match=r"line 2: Torch is pinned twice"):
        read_pins(tmp_path)


def test_every_pin_installs_on_every_python_the_course_admits():
    # A pin that needs a newer patch release than requires-python says (soupsieve 3 needs
    # 3.11.5) makes `make setup` fail with a resolver error on Debian 12's Python 3.11.2.
    root = Path(__file__).resolve().parents[1]
    floor = tomllib.loads((root / "pyproject.toml").read_text())["project"]["requires-python"]
    oldest = Version(floor.removeprefix(">="))
    narrower = {}
    for name, version in read_pins(root).items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        needs = dist.metadata.get("Requires-Python")
        if dist.version.split("+")[0] == version and needs and oldest not in SpecifierSet(needs):
            narrower[f"{name}=={version}"] = needs
    assert not narrower, f"pins that refuse Python {oldest} (requires-python {floor!r}): {narrower}"
