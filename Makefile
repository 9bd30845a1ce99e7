# The two commands: `make reproduce` and `make test`. Each creates .venv and installs the
# project when it is missing, so on a fresh machine they are the whole set-up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rkdo-installed
# torch/torchvision are pinned to the releases this workplace keeps on local disk (pip takes
# them offline). Elsewhere, override: make test TORCH_SPEC="torch torchvision"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# every package pinned (pip-compile output, `make lock` regenerates it); LOCK= installs
# without it (another torch build, another Python)
LOCK ?= constraints.txt
PIP_LOCK := $(if $(LOCK),-c $(LOCK))
RESULTS ?= results/default
# runs executed at once by `make reproduce` (2 one-thread runs beat one two-thread run on a
# 2-core CPU by 1.38x); each run uses 1 torch thread (RunConfig.threads, as a run by hand),
# so on a bigger CPU `make reproduce WORKERS=$(nproc)` uses every core
WORKERS ?= 2
TEST_WORKERS ?= 2

SMOKE_RESULTS ?= results/smoke

.PHONY: first-look reproduce reproduce-fashion test lint lab lock clean-results

# a few minutes: the 6-run smoke grid and its aggregation (numbers mean nothing; it shows
# what a run produces); open $(SMOKE_RESULTS)/index.html
first-look: $(STAMP)
	$(VENV)/bin/rkdo grid params/smoke.yaml --out $(SMOKE_RESULTS) --workers $(WORKERS)
	$(VENV)/bin/rkdo aggregate $(SMOKE_RESULTS)
	@echo "done: open $(SMOKE_RESULTS)/index.html"

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_LOCK) $(TORCH_SPEC)
	$(PY) -m pip install --quiet $(PIP_LOCK) -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name rkdo --display-name "rkdo-suite (.venv)" >/dev/null
	touch $(STAMP)

# the end of both reproduce targets: the FLOP count if missing, the aggregation of the whole
# results folder, its figures into figures/, the summary and the README's results block
define PUBLISH
	test -f $(RESULTS)/flops.json || $(VENV)/bin/rkdo flops --out $(RESULTS)/flops.json
	$(VENV)/bin/rkdo aggregate $(RESULTS)
	mkdir -p figures
	cp $(RESULTS)/figures/*.png $(RESULTS)/figures/*.pdf figures/
	$(VENV)/bin/rkdo readme $(RESULTS) --summary figures/summary.json --readme README.md
endef

reproduce: $(STAMP)
	$(VENV)/bin/rkdo grid params/default.yaml --out $(RESULTS) --workers $(WORKERS)
	$(VENV)/bin/rkdo grid params/default_full.yaml --out $(RESULTS) --workers $(WORKERS)
	$(VENV)/bin/rkdo theory --out $(RESULTS)/theory
	$(VENV)/bin/rkdo mechanism --out $(RESULTS)/mechanism -p results_dir $(RESULTS)
	$(PUBLISH)
	@echo "done: open $(RESULTS)/index.html (tables, figures, every executed notebook)"

# Fashion-MNIST beside digits (params/fashion.yaml: 5 seeds x 2 methods, 100/200/500 optimizer
# steps, the 2-core CPU's grid): into the same results folder, so one aggregation, one site,
# one README block hold both datasets. Needs the dataset's files (apt-get install
# dataset-fashion-mnist, or a data root); the grid checks them before any run starts and
# stops with the way to get them. FASHION_ARGS adds grid options, e.g. on a GPU:
# make reproduce-fashion FASHION_ARGS="--set device=cuda"
FASHION_ARGS ?=
reproduce-fashion: $(STAMP)
	$(VENV)/bin/rkdo grid params/fashion.yaml --out $(RESULTS) --workers $(WORKERS) $(FASHION_ARGS)
	test -f $(RESULTS)/theory/checks.json || $(VENV)/bin/rkdo theory --out $(RESULTS)/theory
	$(PUBLISH)
	@echo "done: open $(RESULTS)/index.html (digits and Fashion-MNIST side by side)"

# test files run in TEST_WORKERS processes (pytest-xdist; each file whole in one of them,
# the smoke grid computed once for all: tests/conftest.py); TEST_WORKERS=0 runs them in one;
# PYTEST_ARGS adds options (e.g. PYTEST_ARGS=--durations=40, the slowest tests)
PYTEST_ARGS ?=
test: $(STAMP)
	$(VENV)/bin/ruff check rkdo_core tests notebooks
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# re-resolve every dependency to its newest allowed version and pin it in constraints.txt
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip-tools
	$(VENV)/bin/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file constraints.txt pyproject.toml constraints.in

lint: $(STAMP)
	$(VENV)/bin/ruff check rkdo_core tests notebooks

# as root (containers, Binder) JupyterLab refuses to start without --allow-root. LAB_ARGS go
# to jupyter lab as they are, e.g. make lab LAB_ARGS="--port 8890 --ip 0.0.0.0 --no-browser"
LAB_ARGS ?=
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=. $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

clean-results:
	rm -rf $(RESULTS)
