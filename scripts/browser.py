"""The one way the project finds and starts a browser: an installed Chrome or Chromium,
driven by Playwright (no browser download).

Search order: the ``CHROMIUM`` environment variable (a path), then ``chromium``,
``chromium-browser``, ``google-chrome`` and ``google-chrome-stable`` on ``PATH``, then
the Chromium that ``playwright install chromium`` fetched, if any.

Usage::

    python scripts/browser.py     # prints the browser's path; exit 1 (and what to
                                  # install) when there is none
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Headless in a container: no sandbox (root), no GPU, and no calls home (without the
# background-networking flags Chromium stalls on refused connections when offline).
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
]
INSTALL_HINT = """No Chrome or Chromium found. Install one of:
  Debian/Ubuntu:  sudo apt-get install -y chromium   (Ubuntu: chromium-browser)
  Fedora:         sudo dnf install -y chromium
  macOS:          brew install --cask chromium   (or Google Chrome)
  anywhere:       .venv/bin/python -m playwright install chromium
or set CHROMIUM=/path/to/chrome."""


def _playwright_chromium(playwright=None) -> str | None:
    """The Chromium that ``playwright install chromium`` put in its cache, if present.
    ``playwright``: a running ``sync_playwright()`` instance to ask (a second one cannot
    start inside it); None starts one."""
    if playwright is not None:
        path = playwright.chromium.executable_path
        return path if path and Path(path).is_file() else None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    with sync_playwright() as started:
        return _playwright_chromium(started)


def find_browser(playwright=None) -> str:
    """Path of an installed Chrome or Chromium (``playwright``: a running
    ``sync_playwright()`` instance, when the caller has one).

    Raises:
        RuntimeError: when none is found; the message says what to install.
    """
    if override := os.environ.get("CHROMIUM"):
        if not (Path(override).is_file() and os.access(override, os.X_OK)):
            raise RuntimeError(f"CHROMIUM={override} is not an executable file")
        return override
    for name in NAMES:
        if path := shutil.which(name):
            return path
    if path := _playwright_chromium(playwright):
        return path
    raise RuntimeError(INSTALL_HINT)


def launch(playwright, **kwargs):
    """Start the found browser headless through a ``sync_playwright()`` instance."""
    return playwright.chromium.launch(executable_path=find_browser(playwright), args=ARGS, **kwargs)


if __name__ == "__main__":
    try:
        print(find_browser())
    except RuntimeError as err:
        print(err, file=sys.stderr)
        sys.exit(1)
