"""Open the built book in headless Chromium and check every page as a reader sees it.

The site is served on 127.0.0.1 and opened in the installed Chromium through Playwright
(``scripts/browser.py`` finds the browser). For each page it checks:

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
import functools
import http.server
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

VIEWPORT = {"width": 1280, "height": 900}
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
    .filter(h => /mybinder\.org|git-pull\?repo=|colab\.research\.google\.com/.test(h));
  return {status: nav ? nav.responseStatus : null, title: document.title,
          articleChars: article.innerText.length, mathjax, mathjaxScripts: scripts,
          mathElements: mathElements.length,
          typeset: document.querySelectorAll("mjx-container").length,
          untypeset, rawTex, images, links, toggles, launch, external,
          solutionCells: article.querySelectorAll(".cell.solution").length};
})()
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # the base class's name
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


def check_page(page, url: str, screenshot: Path | None = None) -> dict:
    """Load ``url`` in a Playwright ``page``, run the page checks, optionally screenshot."""
    exceptions: list[str] = []
    failed: list[str] = []  # resources that do not load (what the browser logs as errors)
    page.on("pageerror", lambda error: exceptions.append(f"{error.name}: {error.message}"))
    page.on("requestfailed", lambda request: failed.append(f"{request.url} ({request.failure})"))

    def on_response(response) -> None:
        if response.status >= 400:
            failed.append(f"{response.url} (HTTP {response.status})")

    page.on("response", on_response)
    try:
        response = page.goto(url, wait_until="load")
    except Exception as err:  # Playwright's own error: the page did not load at all
        return {"url": url, "error": str(err).splitlines()[0]}
    report = page.evaluate(PAGE_CHECK_JS)
    report.update(url=url, exceptions=exceptions, failed_resources=failed)
    report["status"] = report["status"] or response.status
    if screenshot is not None:
        page.evaluate("window.scrollTo(0, 0)")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=screenshot)
    return report


def site_pages(html_dir: Path) -> list[str]:
    """Every HTML page of the site, relative to its root (the redirect ``index`` aside)."""
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        relative = path.relative_to(html_dir)
        if relative.parts[0] not in SKIP_DIRS and relative.as_posix() != "index.html":
            pages.append(relative.as_posix())
    return pages


def check_site(html_dir: Path, browser, screenshots: dict[str, Path] | None = None) -> dict[str, dict]:
    """Report of every page (``site_pages``) as loaded in ``browser`` (Playwright's)."""
    screenshots = screenshots or {}
    reports = {}
    with serve(html_dir) as base:
        for page_name in site_pages(html_dir):
            page = browser.new_page(viewport=VIEWPORT)
            try:
                reports[page_name] = check_page(page, base + page_name, screenshots.get(page_name))
            finally:
                page.close()
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
    problems += [f"resource does not load: {text}" for text in report["failed_resources"]]
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
    import browser as course_browser  # scripts/browser.py, beside this file
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = course_browser.launch(playwright)
        try:
            reports = check_site(args.html_dir, chromium, shots)
        finally:
            chromium.close()
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
