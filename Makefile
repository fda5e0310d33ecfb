# camseg: the two commands of the README, and their parts.
#   make demo   set up .venv and run the PCam example end to end on synthetic data (CPU)
#   make test   set up .venv, then lint, type check, tests + doctests, and the docs build
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.camseg-installed
DEMO_OUT ?= runs/demo

.PHONY: demo test venv lint typecheck pytest docs bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py src/camseg/_cpu.c examples/pcam/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,docs]" -e "examples/pcam[hdf5,report]"
	touch $@

demo: venv
	$(VENV)/bin/camseg-pcam demo --out $(DEMO_OUT)

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

pytest: venv
	$(PY) -m pytest tests src/camseg examples/pcam

docs: venv
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

test: lint typecheck pytest docs

bench: venv
	$(PY) benchmarks/bench_cam.py

clean:
	rm -rf docs/_build docs/generated build dist .pytest_cache .mypy_cache .ruff_cache
