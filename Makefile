# drgrade: `make help` lists the targets. `make test` and `make demo` install first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
export WANDB_SILENT := true
# the machine's pip config lists local indexes; their 'is ignored' notices are noise
QUIET := { grep -v "is ignored" || true; }

LINTED := drgrade tests benchmarks docs

.PHONY: help install test test-slow test-newest-lightning test-lowest lint demo explain-demo reproduce-table3 bench docs clean clean-runs

help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | $(QUIET)
	$(BIN)/python -c "import drgrade, torch, lightning, open_clip, albumentations"
	$(BIN)/python -c "from drgrade.cli import keep_help; keep_help()"  # every drgrade VERB --help at once
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install drgrade (editable) with dev extras

test: $(STAMP)  ## ruff, then the test suite but its slow end-to-end scenarios (offline, CPU, one worker per core; under 3 minutes on 2 cores)
	$(BIN)/ruff check $(LINTED)
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -n auto --durations=10 -m "not slow"

test-slow: $(STAMP)  ## the slow end-to-end scenarios alone (CI runs them after make test; minutes)
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -n auto --durations=10 -m slow

NEWEST := .newest-lightning
test-newest-lightning: $(STAMP)  ## the CLI tests on the newest Lightning the registry offers (CI, after make test)
	rm -rf $(NEWEST)
	$(BIN)/python -m pip install -q --no-deps --target $(NEWEST) --upgrade lightning 2>&1 | $(QUIET)
	PYTHONPATH=$(NEWEST) $(BIN)/python -c "import lightning; print('CLI tests on Lightning', lightning.__version__)"
	PYTHONPATH=$(NEWEST) WANDB_MODE=disabled $(BIN)/python -m pytest -q -n auto tests/integration/test_cli.py tests/integration/test_cli_api.py

# uv, not pip: pip has no lowest-versions resolution. Each direct dependency at its floor (the
# others at their newest that fit), so a floor that lies fails in CI. The torch floor comes from PyPI.
LOWEST := .lowest
LOWEST_TESTS := tests/integration/test_cli_api.py tests/integration/test_checkpoint_policy.py tests/integration/test_cli.py \
  tests/integration/test_page_starts.py tests/unit/test_dependencies.py \
  tests/integration/test_help_cache.py  # builds every verb's parser
test-lowest:  ## the CLI tests on the LOWEST versions the dependency ranges admit, in their own venv (CI)
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install -q uv 2>&1 | $(QUIET)
	$(LOWEST)/bin/uv pip install -q --python $(LOWEST)/bin/python --resolution lowest-direct -e '.[dev]'
	$(LOWEST)/bin/python -c "import numpy, torch, lightning, gradio; print('CLI tests on the lowest versions:', \
	  'numpy', numpy.__version__, 'torch', torch.__version__, 'lightning', lightning.__version__, 'gradio', gradio.__version__)"
	WANDB_MODE=disabled $(LOWEST)/bin/python -m pytest -q -n auto $(LOWEST_TESTS)

lint: $(STAMP)  ## ruff (the same folders as make test)
	$(BIN)/ruff check $(LINTED)

demo: $(STAMP)  ## the paper's protocol on the synthetic default (CPU, minutes); prints Table 3 and 4
	$(BIN)/drgrade reproduce --demo --paper

explain-demo: $(STAMP)  ## attention overlays + comparison sheet for the demo checkpoints (after make demo)
	$(BIN)/drgrade explain --config configs/zero_shot.yaml --config configs/demo.yaml --out reports/demo/explain \
	  --compare "$$(ls -t runs/zero_shot/version_*/checkpoints/best-*.ckpt | head -n 1)" \
	  "$$(ls -t runs/fcn_clip/version_*/checkpoints/best-*.ckpt | head -n 1)" \
	  "$$(ls -t runs/ranking/version_*/checkpoints/best-*.ckpt | head -n 1)"

DATA ?= data
ARGS ?=
reproduce-table3: $(STAMP)  ## the paper's protocol on real APTOS 2019 + Messidor-2 under DATA; ARGS="..." go to every stage
	$(BIN)/drgrade reproduce --data $(DATA) --paper $(ARGS)

bench: $(STAMP)  ## speed and memory benchmarks on this machine (CPU; see benchmarks/README.md)
	$(BIN)/python benchmarks/bench.py
	$(BIN)/python benchmarks/int8.py

docs: $(STAMP)  ## redraw docs/synthetic_grid.png and docs/realism.png (synthetic vs the real photograph)
	$(BIN)/python docs/synthetic_grid.py docs/synthetic_grid.png
	$(BIN)/python docs/realism.py

clean:  ## remove generated synthetic data and tool caches; keeps runs/, reports/ and .venv
	rm -rf data/synthetic .pytest_cache .ruff_cache $(NEWEST) $(LOWEST)

clean-runs:  ## DELETE every trained checkpoint, run folder and report (runs/, reports/): asks first
	@read -r -p "Delete runs/ and reports/ (all checkpoints and results)? [y/N] " answer; \
	  if [ "$$answer" = y ]; then rm -rf runs reports && echo removed runs/ reports/; else echo kept; fi
