# camseg: the two commands of the README, and their parts.
#   make demo   set up .venv and run the PCam example end to end on synthetic data (CPU)
#   make test   set up .venv, then lint, type check, tests + doctests, and the docs build
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.camseg-installed
DEMO_OUT ?= runs/demo

.PHONY: demo test venv lint typecheck pytest pytest-nonative docs bench bench-gpu clean

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

# the post-processing and property suites on the pure-torch fallbacks (no C kernels)
pytest-nonative: venv
	CAMSEG_NO_NATIVE=1 $(PY) -m pytest tests/postprocess tests/properties

docs: venv
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

test: lint typecheck pytest pytest-nonative docs

# the benchmark matrix (benchmarks/README.md): `bench` the documented CPU subset plus the
# other cost scripts (~15 min on 2 cores), `bench-gpu` the GPU suite; results per machine
# in benchmarks/results/matrix-<device>-<machine>.{json,md,png}
bench: venv
	$(PY) -c "import pytorch_grad_cam, captum, torchcam, monai" 2>/dev/null || $(VENV)/bin/pip install --quiet -e ".[bench]"
	$(PY) benchmarks/bench_matrix.py --suite cpu --extras

bench-gpu: venv
	$(PY) -c "import pytorch_grad_cam, captum, torchcam, monai" 2>/dev/null || $(VENV)/bin/pip install --quiet -e ".[bench]"
	$(PY) benchmarks/bench_matrix.py --suite gpu --device cuda

clean:
	rm -rf docs/_build docs/generated docs/auto_examples build dist .pytest_cache .mypy_cache .ruff_cache
