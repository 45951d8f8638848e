"""Sphinx extension for the course book (loaded by _config.yml as a local extension).

- Labels the toggle of each folded exercise solution "Show solution" / "Hide solution".
- ``repo:path`` links point at ``path`` in the course repository (``repository.url``).
- ``course-chapters`` directive: the course map, linking every chapter that exists.
- A ``:::{course-api}`` block becomes an autodoc section per public
  ``transformer_course`` module.
- Removes duplicated inline scripts (a JavaScript error on every page otherwise).
- Refuses to build without the vendored MathJax (formulas would stay raw TeX offline).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

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


def setup(app: Sphinx) -> dict:
    app.add_post_transform(LabelSolutionToggles)
    app.add_directive("course-chapters", CourseChapters)
    app.connect("source-read", _expand_api)
    app.connect("config-inited", _config_inited)
    app.connect("html-page-context", _dedupe_scripts)
    app.connect("html-page-context", _colab_opens_the_student_notebook, priority=600)  # after the theme's
    return {"parallel_read_safe": True, "parallel_write_safe": True}
