"""The course as a student uses it: JupyterLab in a real browser.

JupyterLab is started the way ``make lab`` starts it (``scripts/lab.py``, so as root
here it must pass ``--allow-root``), on a free port with a token, in a temporary copy
of the notebooks. Chromium, driven by Playwright, opens chapter 1, runs all cells,
types a softmax into the exercise cell, reads the check's verdict and hint, saves, and
the saved notebook is graded by the autograder. A second walk passes chapter 2's
MultiHeadAttention in the page and opens chapter 4, whose import says the encoder runs
the student's own attention. Screenshots are kept in ``build/test-artifacts/lab/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from transformer_course import release
from transformer_course.checks.ch01_attention import SOFTMAX
from transformer_course.workspace import WORKSPACE_ENV

pytestmark = pytest.mark.notebook

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "01_attention"
CORRECT = [
    "def softmax(x, dim=-1):",
    "    exp = (x - x.amax(dim=dim, keepdim=True)).exp()",
    "    return exp / exp.sum(dim=dim, keepdim=True)",
]
# The longest any one step in the page may take (a whole chapter's Run All is one): generous,
# since in the full suite the kernel shares the cores with the book's build.
WAIT_S = 600
KERNEL_IDLE = re.compile(r"Python 3 \(ipykernel\) \| Idle")  # the status bar's kernel item
RAN = re.compile(r"\[(\*|\d+)\]")  # a cell's prompt once it is queued or has run
NO_MAX = [  # the catalogued mistake "no max subtraction"
    "def softmax(x, dim=-1):",
    "    exp = x.exp()",
    "    return exp / exp.sum(dim=dim, keepdim=True)",
]


def _settings(directory: Path) -> None:
    """User settings for the test's JupyterLab: every cell rendered (no windowing, so
    that the page holds all outputs), and no news or update checks (offline)."""
    settings = {
        "notebook-extension/tracker": {"windowingMode": "none"},
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, values in settings.items():
        path = directory / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (kernels included)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pids: list[int]) -> list[tuple[int, str]]:
    """The processes of ``pids`` still running, with their command lines (zombies aside)."""
    alive = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.append((pid, Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")))
        except (OSError, IndexError):
            pass
    return alive


@pytest.fixture(scope="module")
def lab(scripts):
    return scripts("lab")


@pytest.fixture
def jupyterlab(tmp_path, lab):
    """JupyterLab started by ``scripts/lab.py`` on a copy of the student notebooks:
    (the URL it printed, the folder)."""
    work = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", work)
    _settings(tmp_path / "settings")
    env = {
        **{key: value for key, value in os.environ.items() if key != WORKSPACE_ENV},  # mine/ next to them
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    port, token = lab.free_port(), "course-test-token"
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "lab.py"), str(work), "--port", str(port), "--token", token],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
        time.sleep(0.5)
    printed = re.search(r"JupyterLab: (\S+)", (tmp_path / "lab.log").read_text())
    try:
        yield printed and printed[1], work
    finally:
        descendants = _children(server.pid)
        server.send_signal(signal.SIGINT)
        server.send_signal(signal.SIGINT)  # the second one skips "Shutdown this server (y/[n])?"
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
        deadline = time.monotonic() + 15  # kernels stop on their own shortly after the server
        while (left := _alive(descendants)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid, _ in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes left behind by JupyterLab: {left}"


def _until(page, what: str, wait, artifacts: Path, seconds: float = WAIT_S) -> None:
    """Run the Playwright wait ``wait(timeout_ms)``; when it has not happened within
    ``seconds``, fail with ``what``, the kernel's status and a screenshot of the page
    (never wait forever)."""
    try:
        wait(seconds * 1000)
    except PlaywrightTimeout:
        shot = artifacts / "lab" / ("timeout-" + re.sub(r"\W+", "-", what).strip("-")[:60] + ".png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=shot)
        status = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator")
        kernel = status.first.get_attribute("data-status", timeout=5000) if status.count() else "none"
        pytest.fail(f"{what}: not within {seconds:.0f} s (kernel {kernel}); the page then: {shot}")


def _run_all(page, url: str, path: Path, artifacts: Path) -> tuple[object, list]:
    """Open the notebook at ``path``, wait for its kernel, and Run > Run All Cells: (its
    cells, their output areas)."""
    notebook = nbformat.read(path, as_version=4)
    page.goto(url.replace("/lab?", f"/lab/tree/{path.name}?"))
    panel = ".jp-NotebookPanel:not(.lm-mod-hidden)"
    cells = page.locator(f"{panel} .jp-Notebook .jp-Cell")
    _until(page, f"{path.name} shows all its cells",
           lambda ms: cells.nth(len(notebook.cells) - 1).wait_for(timeout=ms), artifacts)
    assert cells.count() == len(notebook.cells)
    # The status bar, not the toolbar's execution indicator: the indicator reads "idle"
    # from the start, seconds before the kernel exists, and Run All Cells then runs no
    # cell at all (JupyterLab skips cells while the notebook has no kernel).
    _until(page, f"{path.name}'s kernel is connected and idle",
           lambda ms: page.locator("#jp-main-statusbar", has_text=KERNEL_IDLE).wait_for(timeout=ms),
           artifacts)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
    first_code = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code")
    _until(page, f"Run All Cells starts {path.name}'s first code cell",
           lambda ms: cells.nth(first_code).locator(".jp-InputPrompt", has_text=RAN).wait_for(timeout=ms),
           artifacts)
    return cells, [cells.nth(i).locator(".jp-OutputArea") for i in range(len(notebook.cells))]


def _cell_index(notebook, text: str) -> int:
    return next(i for i, cell in enumerate(notebook.cells) if cell.source.startswith(text))


def _type_code(page, editor, lines: list[str]) -> None:
    """Select all in the cell's editor and type ``lines`` as a student would. The editor
    indents after ``def ...:`` by itself, so each line is typed without its indent."""
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    for number, line in enumerate(lines):
        if number:
            page.keyboard.press("Enter")
        page.keyboard.type(line.lstrip())


def _points(output) -> float:
    text = output.inner_text()
    match = re.search(r"([\d.]+) / ([\d.]+) points?", text)
    assert match, f"no points in the check's output: {text!r}"
    return float(match[1])


def _grade(notebook: Path, tmp_path: Path, name: str) -> dict:
    submission = tmp_path / name / f"{CHAPTER}.ipynb"
    submission.parent.mkdir()
    shutil.copy(notebook, submission)
    out = tmp_path / name / "result.json"
    subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(submission),
         "--chapter", CHAPTER, "--json", str(out)],
        check=True, capture_output=True, timeout=300,
    )
    return json.loads(out.read_text())


def _save(page, path: Path, index: int, lines: list[str]) -> None:
    """Ctrl+S, then wait until the file holds the typed code in cell ``index``."""
    page.keyboard.press("Control+s")
    deadline, saved = time.monotonic() + 30, None
    while saved != "\n".join(lines) and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            saved = nbformat.read(path, as_version=4).cells[index].source
        except (nbformat.reader.NotJSONError, OSError):  # caught in the middle of a write
            pass
    assert saved == "\n".join(lines)


def test_student_edits_runs_checks_and_is_graded_in_jupyterlab(jupyterlab, browser, artifacts, tmp_path):
    url, work = jupyterlab
    assert url and re.fullmatch(r"http://127\.0\.0\.1:\d+/lab\?token=course-test-token", url), url
    shots = artifacts / "lab"
    path = work / f"{CHAPTER}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    exercise, check = _cell_index(notebook, "def softmax("), _cell_index(notebook, "check(softmax)")
    first_call = next(i for i in range(check + 1, len(notebook.cells))
                      if "softmax(" in notebook.cells[i].source)

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(WAIT_S * 1000)  # clicks and reads too: nothing waits forever

    # Run > Run All Cells: the check cell says "not implemented yet", and the run stops
    # at the first cell that calls the stub.
    cells, outputs = _run_all(page, url, path, artifacts)
    _until(page, "chapter 1's Run All reaches the stub's NotImplementedError",
           lambda ms: outputs[first_call].get_by_text("NotImplementedError").first.wait_for(timeout=ms),
           artifacts)
    assert "not implemented yet" in outputs[check].inner_text()

    # A correct softmax, typed into the exercise cell; run it and its check.
    editor = cells.nth(exercise).locator(".cm-content")
    _type_code(page, editor, CORRECT)
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")
    _until(page, "check(softmax) says PASS for a correct softmax",
           lambda ms: outputs[check].get_by_text("PASS").wait_for(timeout=ms), artifacts)
    shown = outputs[check].inner_text()
    visible = len(SOFTMAX.make_cases(0))
    assert f"passed all {visible} visible cases; the grader also runs hidden ones." in shown
    pass_points = _points(outputs[check])
    cells.nth(check).scroll_into_view_if_needed()
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=shots / "softmax_pass.png")
    _save(page, path, exercise, CORRECT)
    graded = _grade(path, tmp_path, "pass")
    softmax = next(t for t in graded["tests"] if t["name"].startswith("softmax: "))
    assert softmax["score"] == pytest.approx(pass_points, abs=1e-3) and pass_points == softmax["max_score"]

    # The catalogued mistake "no max subtraction": FAIL, with that mistake's hint.
    _type_code(page, editor, NO_MAX)
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")
    _until(page, "check(softmax) names the likely mistake",
           lambda ms: outputs[check].get_by_text("Likely mistake").wait_for(timeout=ms), artifacts)
    hint = next(m.hint for m in SOFTMAX.mistakes if m.name == "no max subtraction")
    shown = outputs[check].inner_text()
    assert "FAIL" in shown and hint in shown, shown
    fail_points = _points(outputs[check])
    assert 0 < fail_points < pass_points
    cells.nth(check).scroll_into_view_if_needed()
    page.screenshot(path=shots / "softmax_hint.png")
    _save(page, path, exercise, NO_MAX)
    page.close()

    # The grader on the saved notebook: the points the check showed (every other
    # exercise is still a stub, so they are the whole score).
    graded = _grade(path, tmp_path, "hint")
    softmax = next(t for t in graded["tests"] if t["name"].startswith("softmax: "))
    assert softmax["score"] == pytest.approx(fail_points, abs=1e-3)
    assert graded["score"] == pytest.approx(fail_points, abs=1e-3)
    for shot in ("softmax_pass.png", "softmax_hint.png"):
        assert (shots / shot).read_bytes().startswith(b"\x89PNG")


def test_passed_attention_runs_in_the_next_chapters_encoder(jupyterlab, browser, artifacts):
    """Chapter 2's exercises, written earlier by the student (the course's answers), run
    in the page: check(MultiHeadAttention) passes and keeps it in mine/. Chapter 4 then
    says, in its import cell's output, that its encoder's attention is the student's."""
    url, work = jupyterlab
    chapter2 = work / "02_multi_head_attention.ipynb"
    notebook = nbformat.read(chapter2, as_version=4)
    solution = release.synced_solution(nbformat.read(ROOT / "solutions" / chapter2.name, as_version=4))
    answers = {c.metadata["reference"]: c.source for c in solution.cells if c.metadata.get("reference")}
    for cell in notebook.cells:
        if cell.metadata.get("reference"):
            cell.source = answers[cell.metadata["reference"]]
    nbformat.write(notebook, chapter2)
    check = _cell_index(notebook, "check(MultiHeadAttention)")

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(WAIT_S * 1000)  # clicks and reads too: nothing waits forever
    cells, outputs = _run_all(page, url, chapter2, artifacts)
    _until(page, "chapter 2's check(MultiHeadAttention) keeps the class in mine/",
           lambda ms: outputs[check].get_by_text("Kept in mine/MultiHeadAttention.py").wait_for(timeout=ms),
           artifacts)
    assert "PASS" in outputs[check].inner_text()
    assert (work / "mine" / "MultiHeadAttention.py").is_file()

    chapter4 = nbformat.read(work / "04_encoder.ipynb", as_version=4)
    imports = _cell_index(chapter4, "import math")
    cells, outputs = _run_all(page, url, work / "04_encoder.ipynb", artifacts)
    _until(page, "chapter 4's import cell says its MultiHeadAttention is yours",
           lambda ms: outputs[imports].get_by_text("MultiHeadAttention: yours").wait_for(timeout=ms),
           artifacts)
    shown = outputs[imports].inner_text()
    assert re.search(r"MultiHeadAttention: yours \(chapter 2, passed \d{4}-\d\d-\d\d; "
                     r"mine/MultiHeadAttention\.py\)", shown), shown
    assert "padding_mask: the course's reference (chapter 1 not passed yet here)" in shown
    cells.nth(imports).scroll_into_view_if_needed()
    shots = artifacts / "lab"
    shots.mkdir(parents=True, exist_ok=True)
    cells.nth(imports).screenshot(path=shots / "encoder_runs_yours.png")
    page.close()
    assert (shots / "encoder_runs_yours.png").read_bytes().startswith(b"\x89PNG")


def test_lab_command_allows_root_only_for_root(lab, tmp_path):
    as_root = lab.lab_command(tmp_path, "127.0.0.1", 8888, "t", [], is_root=True)
    as_user = lab.lab_command(tmp_path, "127.0.0.1", 8888, "t", ["--foo"], is_root=False)
    assert "--allow-root" in as_root and "--allow-root" not in as_user
    assert "--no-browser" in as_user and as_user[-1] == "--foo"


def test_browser_is_found_or_named(scripts, monkeypatch, tmp_path):
    finder = scripts("browser")
    chrome = tmp_path / "bin" / "google-chrome"
    chrome.parent.mkdir()
    chrome.write_text("#!/bin/sh\n")
    chrome.chmod(0o755)
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(chrome.parent))
    assert finder.find_browser() == str(chrome)
    chrome.unlink()
    monkeypatch.setattr(finder, "_playwright_chromium", lambda playwright=None: None)
    with pytest.raises(RuntimeError, match="apt-get install -y chromium") as missing:
        finder.find_browser()
    assert "playwright install chromium" in str(missing.value)
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match="not an executable file"):
        finder.find_browser()
