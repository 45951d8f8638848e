"""Sphinx extension for the course book (loaded by _config.yml as a local extension).

- Labels the toggle of each folded exercise solution "Show solution" / "Hide solution".
- ``repo:path`` links point at ``path`` in the course repository (``repository.url``).
- ``course-chapters`` directive: the course map, linking every chapter that exists.
- A ``:::{course-api}`` block becomes an autodoc section per public
  ``transformer_course`` module.
- Removes duplicated inline scripts (a JavaScript error on every page otherwise).
- Refuses to build without the vendored MathJax (formulas would stay raw TeX offline).
- The student edition (``TRANSFORMER_COURSE_BOOK=student``, ``make student-book``):
  the solution code of every chapter that ``release.toml`` does not release is removed
  from the pages (and so from the search index), the downloadable notebooks are the
  student notebooks, and the launch buttons open them in the student repository.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
from pathlib import Path
from urllib.parse import quote

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.errors import ConfigError
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective

MATHJAX = Path("_vendor") / "_static" / "mathjax" / "tex-chtml.js"
API_PACKAGE = "transformer_course"
# Per-chapter catalogues of the checks: machinery, not an API anyone calls.
API_SKIP = re.compile(r"(^|\.)_|\.checks\.ch\d\d_")
EDITION_ENV = "TRANSFORMER_COURSE_BOOK"  # "student" builds the student edition


def _student_edition(app: Sphinx) -> bool:
    return app.config.course_edition == "student"


class LabelSolutionToggles(SphinxPostTransform):
    """Relabel folded cells that show reference code (the exercises' solutions).

    Runs just before myst-nb's ``HideInputCells`` (priority 199), which turns the
    prompts into the ``<details>`` summary.
    """

    default_priority = 198
    formats = ("html",)

    def run(self, **kwargs) -> None:
        for node in self.document.findall(nodes.container):
            metadata = node.get("cell_metadata") or {}
            if node.get("nb_element") == "cell_code" and metadata.get("reference"):
                if node.get("hide_mode") == "input":
                    node["prompt_show"] = "Show solution"
                    node["prompt_hide"] = "Hide solution"
                    node["classes"].append("solution")


class RemoveSolutions(SphinxPostTransform):
    """Student edition: drop the source of every unreleased exercise's solution cell,
    keeping its outputs. Runs before the toggles are made, so nothing is folded: the
    code is not in the page, its search index entry or anywhere else in the site."""

    default_priority = 197
    formats = ("html",)

    def run(self, **kwargs) -> None:
        if not _student_edition(self.app):
            return
        from transformer_course.checks.registry import get
        from transformer_course.release import SOLUTION_TAG

        released = self.app.config.course_released
        for node in list(self.document.findall(nodes.container)):
            metadata = node.get("cell_metadata") or {}
            dotted = metadata.get("reference")
            if node.get("nb_element") != "cell_code" or not dotted:
                continue
            if SOLUTION_TAG not in metadata.get("tags", []):
                continue  # given code shown from the package, not a solution
            if get(dotted.rpartition(".")[2]).chapter in released:
                continue
            for child in list(node.children):
                if child.get("nb_element") == "cell_code_source":
                    node.remove(child)
            node["hide_mode"] = None
            note = nodes.paragraph(
                text="Your solution goes here: write it in the chapter's notebook. "
                "The results shown after it come from the reference solution."
            )
            note["classes"].append("solution-removed")
            node.insert(0, note)


class CourseChapters(SphinxDirective):
    """A list of chapters: ``NN_name: summary`` per line; present chapters are links."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        lines = []
        for line in self.content:
            chapter, sep, summary = line.partition(":")
            if not sep:
                raise self.error(f"course-chapters: expected 'NN_name: summary', got {line!r}")
            docname = f"chapters/{chapter.strip()}"
            if docname in self.env.found_docs:
                lines.append(f"1. {{doc}}`{docname}`: {summary.strip()}")
            else:  # not written yet: describe it without a link
                lines.append(f"1. **{chapter.strip()}**: {summary.strip()}")
        container = nodes.container(classes=["course-chapters"])
        self.state.nested_parse(
            StringList(lines, source=self.get_source_info()[0]), self.content_offset, container
        )
        return [container]


def api_modules(package: str = API_PACKAGE) -> list[str]:
    """Public modules of ``package`` in import order (the package itself first)."""
    root = importlib.import_module(package)
    names = [package] + [info.name for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")]
    return [name for name in names if not API_SKIP.search(name)]


API_MARKER = ":::{course-api}\n:::"


def api_markdown() -> str:
    """A section per public module; autodoc writes reStructuredText, hence eval-rst."""
    sections = [
        f"## `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}\n   :members:\n```\n"
        for name in api_modules()
    ]
    return "\n".join(sections)


def _expand_api(app: Sphinx, docname: str, source: list[str]) -> None:
    """Replace the ``course-api`` block with the generated sections (``source-read``)."""
    if API_MARKER in source[0]:
        source[0] = source[0].replace(API_MARKER, api_markdown())


def _config_inited(app: Sphinx, config) -> None:
    if not (Path(app.srcdir) / MATHJAX).is_file():
        raise ConfigError(
            f"MathJax is missing from book/{MATHJAX}: run `make book-deps` "
            "(it unpacks the npm package mathjax@3 there)."
        )
    theme = config.html_theme_options
    url = theme.get("repository_url", "").rstrip("/")
    branch = theme.get("repository_branch", "main")
    schemes = config.myst_url_schemes
    if not isinstance(schemes, dict):
        schemes = {scheme: None for scheme in schemes}
    schemes["repo"] = {"url": f"{url}/blob/{branch}/{{{{path}}}}"}
    config.myst_url_schemes = schemes


def _dedupe_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Drop inline scripts registered twice (sphinx-thebe's and sphinx-togglebutton's
    settings are, under Sphinx 7.4, at another priority): a second ``const`` declaration
    is a SyntaxError in every page's console."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (
            getattr(script, "filename", str(script)) or "",
            tuple(sorted(getattr(script, "attributes", {}).items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"][:] = unique


def _colab_opens_the_student_notebook(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Colab reads a notebook straight from GitHub, which does not follow the symbolic link
    ``book/chapters``: its launch button opens the chapter's student notebook instead
    (``notebooks/``, same file name), the one with the exercises to do."""
    for button in context.get("header_buttons", []):
        for item in button.get("buttons", []):
            if item.get("text") == "Colab":
                item["url"] = item["url"].replace("/book/chapters/", "/notebooks/")


def _student_config(app: Sphinx, config) -> None:
    """Student edition: the released chapters and the student repository, from
    ``release.toml`` next to the book."""
    config.course_edition = os.environ.get(EDITION_ENV, config.course_edition)
    if config.course_edition != "student":
        return
    from transformer_course.student_edition import read_config

    release = read_config(Path(app.srcdir).parent / "release.toml")
    config.course_released = list(release.released)
    theme = config.html_theme_options
    theme["repository_url"] = release.student_repository
    theme["path_to_docs"] = ""


def _student_launch_links(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Launch buttons open ``notebooks/<chapter>.ipynb`` of the student repository
    (the student edition's layout) instead of the book's own chapter path."""
    if not _student_edition(app) or not pagename.startswith("chapters/"):
        return
    chapter = pagename.removeprefix("chapters/")
    swaps = {f"{pagename}.ipynb": f"notebooks/{chapter}.ipynb"}
    swaps |= {quote(k, safe=""): quote(v, safe="") for k, v in swaps.items()}

    def swap(value):
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, str) and value.startswith("https://"):  # not the download links
            for old, new in swaps.items():
                value = value.replace(old, new)
        return value

    context["header_buttons"][:] = swap(context.get("header_buttons", []))


def _student_sources(app: Sphinx, exception) -> None:
    """Student edition: the downloadable ``_sources/chapters/*.ipynb`` become the
    student notebooks (no solution code; outputs are on the page)."""
    if exception is not None or not _student_edition(app):
        return
    from transformer_course import release

    for path in (Path(app.outdir) / "_sources" / "chapters").glob("*.ipynb"):
        path.write_text(release.student_notebook(Path(app.srcdir) / "chapters" / path.name))


def setup(app: Sphinx) -> dict:
    app.add_config_value("course_edition", "instructor", "env")
    app.add_config_value("course_released", [], "env")
    app.connect("config-inited", _student_config)
    app.add_post_transform(RemoveSolutions)
    app.connect("html-page-context", _student_launch_links, priority=900)
    app.connect("build-finished", _student_sources)
    app.add_post_transform(LabelSolutionToggles)
    app.add_directive("course-chapters", CourseChapters)
    app.connect("source-read", _expand_api)
    app.connect("config-inited", _config_inited)
    app.connect("html-page-context", _dedupe_scripts)
    app.connect("html-page-context", _colab_opens_the_student_notebook, priority=600)  # after the theme's
    return {"parallel_read_safe": True, "parallel_write_safe": True}
