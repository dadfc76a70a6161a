# MLTrack: `make demo` runs the quick start, `make test` the whole test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
EXP ?= mlt-experiments/quickstart

.PHONY: demo test venv browser bench clean

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

bench: venv
	$(PY) benchmarks/kernel_overhead.py
	$(PY) benchmarks/sampler.py

clean:
	rm -rf $(VENV) build dist *.egg-info mlt-experiments
