# MLTrack: `make demo` runs the quick start, `make test` the whole test suite, `make lint` the style checks.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
EXP ?= mlt-experiments/quickstart

.PHONY: demo test lint venv browser bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(PY)
	$(PIP) install -q -e ".[examples]"

demo: venv
	$(PY) examples/run_quickstart.py --exp $(EXP) --report $(EXP)-report.html

# Browser tests drive Debian's Chromium (Playwright cannot download its own here).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q chromium; }

test: $(PY) browser
	$(PIP) install -q -e ".[test]"
	$(PY) -m pytest -q -p no:cacheprovider

# The style and the layers: ruff (lint and format), mypy in strict mode, import-linter's contracts.
lint: $(PY)
	$(PIP) install -q -e ".[lint]"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	PYTHONPATH=dashboard $(VENV)/bin/lint-imports

bench: venv
	$(PY) benchmarks/kernel_overhead.py
	$(PY) benchmarks/sampler.py

clean:
	rm -rf $(VENV) build dist *.egg-info mlt-experiments
