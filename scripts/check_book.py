"""Open the built book in headless Chromium and check every page as a reader sees it.

The site is served on 127.0.0.1 and driven through the Chrome DevTools Protocol over a
pipe (``--remote-debugging-pipe``; standard library only). For each page it checks:

- the page loads (HTTP 200, no JavaScript exception, no resource that fails to load)
  and loads no script or stylesheet from outside the site (it must work offline);
- math is typeset by the site's own MathJax: every ``.math`` element holds an
  ``mjx-container`` and no raw TeX delimiters are left in the visible text;
- every image loads and decodes (``naturalWidth > 0``);
- every internal link resolves (HTTP 200, and the ``#fragment`` exists in the target);
- each folded cell is a working toggle: closed at first, its code hidden, and open
  with the code visible after a click.

Usage::

    python scripts/check_book.py book/_build/html --screenshots book/_build/screenshots

prints a line per page and every problem; exit status 1 when there is any.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import functools
import http.server
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    # without these it stalls on refused connections to Google's services
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
]
VIEWPORT = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static"}

# Runs inside each page; resolves to a JSON-able report.
PAGE_CHECK_JS = r"""
(async () => {
  const withTimeout = (promise, ms, fallback) =>
    Promise.race([promise, new Promise(r => setTimeout(() => r(fallback), ms))]);
  const nav = performance.getEntriesByType("navigation")[0];
  const article = document.querySelector("article.bd-article") || document.body;

  // Math: wait for MathJax's first typesetting pass, if the page loads MathJax.
  const scripts = [...document.scripts].map(s => s.src).filter(s => /mathjax/i.test(s));
  let mathjax = null;
  if (scripts.length) {
    for (let i = 0; i < 200 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
      await new Promise(r => setTimeout(r, 50));
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      await withTimeout(MathJax.startup.promise, 20000, null);
      mathjax = MathJax.version || "unknown";
    }
  }
  const mathElements = [...article.querySelectorAll(".math")];
  const untypeset = mathElements.filter(el => !el.querySelector("mjx-container"))
                                .map(el => el.textContent.trim().slice(0, 80));
  const skip = "pre, code, script, style, textarea, mjx-container, .highlight";
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {
    acceptNode: n => n.parentElement && n.parentElement.closest(skip)
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT });
  let text = "";
  while (walker.nextNode()) text += walker.currentNode.textContent + " ";
  const rawTex = [];
  const texPattern = new RegExp([
    String.raw`\\[()\[\]]`, String.raw`\$\$`, String.raw`\\begin\{`,  // delimiters
    String.raw`\\(frac|sqrt|mathrm|mathbf|text|sum|top)\b`,          // commands
    String.raw`\$[^$\s][^$\n]*\\[A-Za-z]+[^$\n]*\$`,                  // $...\cmd...$
  ].join("|"), "g");
  for (const m of text.matchAll(texPattern))
    rawTex.push(text.slice(Math.max(0, m.index - 30), m.index + 40).replace(/\s+/g, " "));

  // Images: load each one again and decode it.
  const probe = src => new Promise(resolve => {
    const img = new Image();
    img.onload = () => resolve(img.naturalWidth > 0);
    img.onerror = () => resolve(false);
    img.src = src;
  });
  const images = [];
  for (const img of document.querySelectorAll("img")) {
    const src = img.currentSrc || img.src;
    images.push({src, inArticle: article.contains(img),
                 ok: await withTimeout(probe(src), 15000, false)});
  }

  // Internal links: fetch each target once; check the fragment exists there.
  const targets = new Map();
  for (const a of document.querySelectorAll("a[href]")) {
    const raw = a.getAttribute("href");
    if (/^(mailto|javascript|data):/i.test(raw)) continue;
    const url = new URL(raw, location.href);
    if (url.origin !== location.origin) continue;
    const page = url.href.split("#")[0];
    if (!targets.has(page)) targets.set(page, new Set());
    if (url.hash.length > 1) targets.get(page).add(decodeURIComponent(url.hash.slice(1)));
  }
  const links = [];
  for (const [page, fragments] of targets) {
    let status = 0, doc = null;
    if (page === location.href.split("#")[0]) { status = nav ? nav.responseStatus : 200; doc = document; }
    else {
      try {
        const response = await fetch(page);
        status = response.status;
        if (fragments.size && response.ok)
          doc = new DOMParser().parseFromString(await response.text(), "text/html");
      } catch (e) { status = -1; }
    }
    const missing = doc ? [...fragments].filter(f =>
        !doc.getElementById(f) && !doc.getElementsByName(f).length) : [];
    links.push({url: page, status, missing});
  }

  // Folded cells: closed, code hidden; a click opens them and shows the code.
  const toggles = [];
  for (const details of article.querySelectorAll("details.hide")) {
    const summary = details.querySelector("summary");
    const label = (summary.querySelector(".collapsed") || summary).textContent.trim();
    const code = details.querySelector("pre");
    const shown = () => !!code && code.checkVisibility() && code.offsetHeight > 0;
    const closedAtFirst = !details.open, hiddenAtFirst = !shown();
    summary.click();
    await new Promise(r => setTimeout(r, 0));
    const opens = details.open && shown();
    summary.click();
    toggles.push({label, closedAtFirst, hiddenAtFirst, opens,
                  solution: !!details.closest(".cell.solution")});
  }

  // Everything the page runs or styles itself with must come from the site (offline).
  const external = [...document.querySelectorAll("script[src], link[rel=stylesheet][href]")]
    .map(el => el.src || el.href).filter(url => new URL(url).origin !== location.origin);
  const launch = [...document.querySelectorAll("a[href]")].map(a => a.href)
    .filter(h => /mybinder\.org|git-pull\?repo=/.test(h));
  return {status: nav ? nav.responseStatus : null, title: document.title,
          articleChars: article.innerText.length, mathjax, mathjaxScripts: scripts,
          mathElements: mathElements.length,
          typeset: document.querySelectorAll("mjx-container").length,
          untypeset, rawTex, images, links, toggles, launch, external,
          solutionCells: article.querySelectorAll(".cell.solution").length};
})()
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def find_chromium() -> str:
    """Path of the Chromium binary, or a clear error that says how to install it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise RuntimeError("Chromium not found: run `make book-deps` (apt-get install chromium)")


def _describe(details: dict) -> str:
    """One line for a JavaScript exception: message and where it was thrown."""
    exception = details.get("exception", {})
    message = exception.get("description") or details.get("text", "")
    return f"{message.splitlines()[0] if message else '?'} at {details.get('url', '?')}"


def _high_fd(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Browser:
    """Headless Chromium driven over the DevTools protocol (JSON messages, NUL-ended)."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="book-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # move the child's ends above 9 so that the redirections below cannot clash
        to_browser_r, from_browser_w = (_high_fd(fd) for fd in (to_browser_r, from_browser_w))
        # Chromium reads commands on fd 3 and writes replies on fd 4.
        shell = f'exec 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-; exec "$@"'
        self._process = subprocess.Popen(
            [
                "bash",
                "-c",
                shell,
                "bash",
                find_chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={self._profile}",
                "about:blank",
            ],
            pass_fds=(to_browser_r, from_browser_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(method, session=self.session)
        self.call("Emulation.setDeviceMetricsOverride", VIEWPORT, session=self.session)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium exited")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(
        self,
        method: str,
        params: dict | None = None,
        session: str | None = None,
        timeout: float | None = None,
    ) -> dict:
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, event: str, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, message in enumerate(self.events):
                if message.get("method") == event:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def check_page(self, url: str, screenshot: Path | None = None) -> dict:
        """Load ``url``, run the page checks, and optionally save a screenshot."""
        self.events.clear()
        navigation = self.call("Page.navigate", {"url": url}, session=self.session)
        if navigation.get("errorText"):
            return {"url": url, "error": navigation["errorText"]}
        self.wait_for("Page.loadEventFired")
        result = self.call(
            "Runtime.evaluate",
            {"expression": PAGE_CHECK_JS, "awaitPromise": True, "returnByValue": True},
            session=self.session,
        )
        if "exceptionDetails" in result:
            return {"url": url, "error": f"page check failed: {result['exceptionDetails']}"}
        report = result["result"]["value"]
        report["url"] = url
        report["exceptions"] = [
            _describe(e["params"]["exceptionDetails"])
            for e in self.events
            if e.get("method") == "Runtime.exceptionThrown"
        ]
        report["console_errors"] = [
            e["params"]["entry"].get("text", "") + " " + e["params"]["entry"].get("url", "")
            for e in self.events
            if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
        ]
        if screenshot is not None:
            self.call("Runtime.evaluate", {"expression": "window.scrollTo(0, 0)"}, session=self.session)
            data = self.call("Page.captureScreenshot", {"format": "png"}, session=self.session)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(data["data"]))
        return report

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, 9)
            self._process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self._profile, ignore_errors=True)


def site_pages(html_dir: Path) -> list[str]:
    """Every HTML page of the site, relative to its root (the redirect ``index`` aside)."""
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        relative = path.relative_to(html_dir)
        if relative.parts[0] not in SKIP_DIRS and relative.as_posix() != "index.html":
            pages.append(relative.as_posix())
    return pages


def check_site(html_dir: Path, screenshots: dict[str, Path] | None = None) -> dict[str, dict]:
    """Report of every page (``site_pages``) as loaded in headless Chromium."""
    screenshots = screenshots or {}
    reports = {}
    with serve(html_dir) as base:
        browser = Browser()
        try:
            for page in site_pages(html_dir):
                reports[page] = browser.check_page(base + page, screenshots.get(page))
        finally:
            browser.close()
    return reports


def page_problems(report: dict) -> list[str]:
    """What is wrong with one page, in words (empty when nothing is)."""
    if "error" in report:
        return [f"does not load: {report['error']}"]
    problems = []
    if report["status"] != 200:
        problems.append(f"HTTP status {report['status']}")
    if report["articleChars"] < 50:
        problems.append("page has (almost) no content")
    problems += [f"JavaScript exception: {text}" for text in report["exceptions"]]
    problems += [f"console error: {text}" for text in report["console_errors"]]
    problems += [f"loads from outside the site: {url}" for url in report["external"]]
    if report["mathElements"] and report["mathjax"] is None:
        problems.append(f"{report['mathElements']} formulas but MathJax did not start")
    if any("://" in src and "127.0.0.1" not in src for src in report["mathjaxScripts"]):
        problems.append(f"MathJax loaded from outside the site: {report['mathjaxScripts']}")
    problems += [f"formula not typeset: {tex!r}" for tex in report["untypeset"]]
    problems += [f"raw TeX visible: {snippet!r}" for snippet in report["rawTex"]]
    problems += [f"image does not load: {img['src']}" for img in report["images"] if not img["ok"]]
    for link in report["links"]:
        if link["status"] != 200:
            problems.append(f"broken link: {link['url']} (HTTP {link['status']})")
        problems += [f"broken link: {link['url']}#{frag} (no such anchor)" for frag in link["missing"]]
    for toggle in report["toggles"]:
        if not (toggle["closedAtFirst"] and toggle["hiddenAtFirst"] and toggle["opens"]):
            problems.append(f"toggle {toggle['label']!r} does not fold its code: {toggle}")
    return problems


def summary(page: str, report: dict) -> str:
    if "error" in report:
        return f"{page}: {report['error']}"
    images = sum(img["inArticle"] for img in report["images"])
    solutions = sum(t["solution"] for t in report["toggles"])
    return (
        f"{page}: {report['typeset']} formulas typeset, {images} figures, "
        f"{len(report['links'])} internal link targets, {solutions} solution toggles"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html_dir", type=Path, nargs="?", default=Path("book/_build/html"))
    parser.add_argument("--screenshots", type=Path, help="save the first two pages' screenshots here")
    parser.add_argument("--json", type=Path, help="write the full report here")
    args = parser.parse_args(argv)
    pages = site_pages(args.html_dir)
    shots = {}
    if args.screenshots:
        chapters = [p for p in pages if p.startswith("chapters/")]
        for page in ["intro.html", *chapters[:1]]:
            shots[page] = args.screenshots / (Path(page).stem + ".png")
    reports = check_site(args.html_dir, shots)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1))
    failed = 0
    for page, report in reports.items():
        print(summary(page, report))
        for problem in page_problems(report):
            failed += 1
            print("   ", problem)
    print(f"{len(reports)} pages, {failed} problems")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
