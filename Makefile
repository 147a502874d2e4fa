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

.PHONY: help install test lint demo clean

help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | $(QUIET)
	$(BIN)/python -c "import drgrade, torch, lightning, open_clip, albumentations"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install drgrade (editable) with dev extras

test: $(STAMP)  ## run the test suite (offline, CPU)
	WANDB_MODE=disabled $(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check drgrade tests

demo: $(STAMP)  ## zero-shot test, FCN-CLIP and ranking fit + test on the synthetic default (CPU)
	$(BIN)/drgrade test --config configs/zero_shot.yaml --config configs/demo.yaml
	for model in fcn_clip ranking; do \
	  $(BIN)/drgrade fit --config configs/$$model.yaml --config configs/demo.yaml && \
	  $(BIN)/drgrade test --config configs/$$model.yaml --config configs/demo.yaml \
	    --ckpt_path best || exit 1; \
	done

clean:  ## remove runs, generated data and caches (keeps .venv)
	rm -rf runs data/synthetic reports .pytest_cache .ruff_cache
