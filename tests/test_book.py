"""The course book, built at the quick setting and read in headless Chromium (Playwright).

One build (every chapter notebook executed, warnings are errors) and one pass of the
browser over every page (scripts/check_book.py) feed all the tests below. Artifacts
stay in book/_build/test/: the site (_build/html), screenshots of the landing page and
of the first chapter, and report.json (timings and every page's findings).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import yaml

from transformer_course.release import SOLUTION_TAG
from transformer_course.settings import QUICK_ENV

pytestmark = pytest.mark.notebook

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
OUT = BOOK / "_build" / "test"
HTML = OUT / "_build" / "html"
SHOTS = OUT / "screenshots"
CHAPTERS = sorted((ROOT / "solutions").glob("*.ipynb"))
CONFIG = yaml.safe_load((BOOK / "_config.yml").read_text())


# The quick setting (conftest.py sets it for the whole test run).
BUILD_ENV = {**os.environ, QUICK_ENV: "1"}


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_book = _load("check_book", ROOT / "scripts" / "check_book.py")


@dataclass
class Site:
    reports: dict[str, dict]
    timing: dict[str, float]


@pytest.fixture(scope="module")
def site(browser) -> Site:
    start = time.monotonic()
    build = subprocess.run(
        [
            str(Path(sys.executable).parent / "jupyter-book"),
            "build",
            str(BOOK),
            "--all",
            "-W",
            "--keep-going",
            "--path-output",
            str(OUT),
        ],
        capture_output=True,
        text=True,
        env=BUILD_ENV,
        timeout=1200,
    )
    build_s = time.monotonic() - start
    if build.returncode != 0:
        output = build.stdout + build.stderr
        problems = [
            line
            for line in output.splitlines()
            if ("WARNING" in line or "ERROR" in line or "Error" in line) and "[IPKernelApp]" not in line
        ]
        pytest.fail(
            "book build failed (warnings are errors):\n"
            + "\n".join(problems[-40:] or output.splitlines()[-40:])
        )
    first = f"chapters/{CHAPTERS[0].stem}.html" if CHAPTERS else None
    shots = {"intro.html": SHOTS / "landing.png"}
    if first:
        shots[first] = SHOTS / f"{CHAPTERS[0].stem}.png"
    start = time.monotonic()
    reports = check_book.check_site(HTML, browser, shots)
    timing = {"quick_build_s": round(build_s, 1), "browser_s": round(time.monotonic() - start, 1)}
    executed = re.findall(r"(\w+)\.ipynb: Executed notebook in ([\d.]+) seconds", build.stdout + build.stderr)
    timing["notebooks_s"] = {name: float(seconds) for name, seconds in executed}
    (OUT / "report.json").write_text(json.dumps({"timing": timing, "pages": reports}, indent=1))
    return Site(reports, timing)


def _chapter_page(path: Path) -> str:
    return f"chapters/{path.stem}.html"


def test_every_chapter_and_guide_page_is_built(site):
    expected = {"intro.html", "students.html", "instructors.html", "api.html"}
    expected |= {_chapter_page(path) for path in CHAPTERS}
    assert CHAPTERS, "no chapter notebook in solutions/"
    assert expected <= set(site.reports), f"missing pages: {expected - set(site.reports)}"


def test_every_page_loads_cleanly(site):
    problems = {}
    for page, report in site.reports.items():
        found = [
            p
            for p in check_book.page_problems(report)
            if p.startswith(("does not load", "HTTP", "page has", "JavaScript", "resource", "loads from"))
        ]
        if found:
            problems[page] = found
    assert not problems


def test_math_is_typeset_by_the_sites_own_mathjax(site):
    problems = {}
    for page, report in site.reports.items():
        found = [
            p for p in check_book.page_problems(report) if p.startswith(("formula", "raw TeX", "MathJax"))
        ]
        if found:
            problems[page] = found
    assert not problems
    for path in CHAPTERS:
        notebook = nbformat.read(path, as_version=4)
        has_math = any("$" in cell.source for cell in notebook.cells if cell.cell_type == "markdown")
        report = site.reports[_chapter_page(path)]
        if has_math:
            assert report["mathjax"] and report["typeset"] > 0, f"{path.name}: no formula typeset"
            assert all("/_static/mathjax/" in src for src in report["mathjaxScripts"])


def _image_outputs(executed: Path) -> int:
    notebook = nbformat.read(executed, as_version=4)
    return sum(
        any(key.startswith("image/") for key in output.get("data", {}))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


def test_every_image_loads_and_every_figure_is_shown(site):
    broken = {
        page: [img["src"] for img in report["images"] if not img["ok"]]
        for page, report in site.reports.items()
    }
    assert not {page: srcs for page, srcs in broken.items() if srcs}
    landing = [img["src"] for img in site.reports["intro.html"]["images"] if img["inArticle"]]
    assert any(src.endswith("architecture.svg") for src in landing)
    total = 0
    for path in CHAPTERS:
        executed = OUT / "_build" / "jupyter_execute" / "chapters" / path.name
        figures = sum(img["inArticle"] for img in site.reports[_chapter_page(path)]["images"])
        assert figures >= _image_outputs(executed), f"{path.name}: figures missing from the page"
        total += figures
    assert total > 0, "no chapter shows a figure: are the kernels drawing inline?"


def test_no_internal_link_is_broken(site):
    broken = {
        page: [p for p in check_book.page_problems(report) if p.startswith("broken link")]
        for page, report in site.reports.items()
    }
    assert not {page: links for page, links in broken.items() if links}


def test_landing_page_links_every_chapter(site):
    targets = {
        link["url"].rsplit("/", 2)[-2] + "/" + link["url"].rsplit("/", 1)[-1]
        for link in site.reports["intro.html"]["links"]
    }
    assert {_chapter_page(path) for path in CHAPTERS} <= targets


def test_each_solution_is_folded_behind_a_working_toggle(site):
    for path in CHAPTERS:
        notebook = nbformat.read(path, as_version=4)
        expected = sum(
            1
            for cell in notebook.cells
            if cell.cell_type == "code"
            and cell.metadata.get("reference")
            and SOLUTION_TAG in cell.metadata.get("tags", [])
        )
        toggles = [t for t in site.reports[_chapter_page(path)]["toggles"] if t["solution"]]
        assert len(toggles) == expected, f"{path.name}: {len(toggles)} of {expected} toggles"
        for toggle in toggles:
            assert toggle["label"] == "Show solution"
            assert toggle["closedAtFirst"] and toggle["hiddenAtFirst"] and toggle["opens"]


def test_launch_buttons_open_the_chapter_from_the_repository(site):
    repository = CONFIG["repository"]["url"].removeprefix("https://github.com/")
    hub = CONFIG["launch_buttons"]["jupyterhub_url"]
    for path in CHAPTERS:
        launch = site.reports[_chapter_page(path)]["launch"]
        notebook = f"book/chapters/{path.name}"
        assert any(f"mybinder.org/v2/gh/{repository}/" in url and url.endswith(notebook) for url in launch), (
            launch
        )
        assert any(url.startswith(hub) and notebook in url for url in launch), launch
        # Colab reads GitHub, where book/chapters is a link: it opens the student notebook.
        branch = CONFIG["repository"]["branch"]
        colab = f"https://colab.research.google.com/github/{repository}/blob/{branch}/notebooks/{path.name}"
        assert colab in launch, launch


def test_footer_and_api_reference(site):
    ext = _load("course_book", BOOK / "_ext" / "course_book.py")
    landing = (HTML / "intro.html").read_text()
    assert CONFIG["copyright"] in landing
    assert "Transformers from scratch: build the Transformer" in landing
    api = (HTML / "api.html").read_text()
    modules = ext.api_modules()
    assert "transformer_course.attention" in modules
    missing = [name for name in modules if f'id="module-{name}"' not in api]
    assert not missing, f"modules without a reference section: {missing}"


def test_screenshots_are_kept(site):
    shots = [SHOTS / "landing.png"] + [SHOTS / f"{CHAPTERS[0].stem}.png"]
    for shot in shots:
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000, shot


GOOD_PAGE = """<!DOCTYPE html><html><head><title>good</title><link rel="icon" href="dot.svg"></head>
<body><article class="bd-article"><p>A page with enough words in it to count as content.</p>
<img src="dot.svg"><a href="bad.html">bad</a><a href="#here" id="here">here</a>
<details class="hide"><summary><p class="collapsed">Show solution</p></summary>
<pre>print("hidden")</pre></details></article></body></html>"""
BAD_PAGE = """<!DOCTYPE html><html><head><title>bad</title><link rel="icon" href="dot.svg"></head>
<body><article class="bd-article"><p>A page with enough words in it to count as content.</p>
<p>Raw display math: $$ a^2 $$ and <span class="math">\\(x^2\\)</span></p>
<img src="missing.png"><a href="nowhere.html">gone</a><a href="good.html#nope">no anchor</a>
<details class="hide" open><summary><p class="collapsed">Show solution</p></summary>
<pre>print("shown")</pre></details></article>
<script>throw new Error("boom")</script>
<script src="https://cdn.example.org/lib.js"></script></body></html>"""
DOT = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>'


def test_browser_check_reports_each_kind_of_problem(browser, tmp_path):
    (tmp_path / "good.html").write_text(GOOD_PAGE)
    (tmp_path / "bad.html").write_text(BAD_PAGE)
    (tmp_path / "dot.svg").write_text(DOT)
    reports = check_book.check_site(tmp_path, browser)
    assert check_book.page_problems(reports["good.html"]) == []
    assert reports["good.html"]["toggles"][0]["opens"]
    problems = "\n".join(check_book.page_problems(reports["bad.html"]))
    for expected in [
        "JavaScript exception: Error: boom",
        "MathJax did not start",
        "formula not typeset: '\\\\(x^2\\\\)'",
        "raw TeX visible",
        "resource does not load: http://127.0.0.1:",
        "missing.png (HTTP 404)",
        "nowhere.html (HTTP 404)",
        "good.html#nope (no such anchor)",
        "toggle 'Show solution' does not fold its code",
        "loads from outside the site: https://cdn.example.org/lib.js",
    ]:
        assert expected in problems, f"{expected!r} not in:\n{problems}"
