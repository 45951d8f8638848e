"""Fixtures of the test suite: the browser shared by the browser tests (the book,
JupyterLab), the installed Chromium found by ``scripts/browser.py`` and driven by
Playwright; screenshots go to ``build/test-artifacts/``. Training runs on the CPU."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from transformer_course.device import DEVICE_ENV

os.environ[DEVICE_ENV] = "cpu"  # the suite's numbers are CPU numbers; kernels inherit it

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "build" / "test-artifacts"


def load_script(name: str):
    """Import ``scripts/<name>.py`` as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"course_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def scripts():
    """``scripts("lab")``: the module ``scripts/lab.py``."""
    return load_script


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests keep what a person may want to look at (screenshots)."""
    return ARTIFACTS


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium for the whole session (one per xdist worker)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = load_script("browser").launch(playwright)
        yield chromium
        chromium.close()
