# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_data
DEMO_OUT ?= demo_out
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-fast clean-demo

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

## the main job on the embedded demo data: data -> embeddings -> LLM priors -> heads -> submission
demo: install
	PY=$(PY) DEMO_DIR=$(DEMO_DIR) DEMO_OUT=$(DEMO_OUT) bash scripts/demo.sh

## lint (ruff, configured in pyproject.toml) and the whole test suite (slow-marked tests included)
test: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

## everything but the slow-marked tests (for quick local iterations)
test-fast: install
	$(PY) -m pytest -q -m "not slow"

clean-demo:
	rm -rf $(DEMO_DIR) $(DEMO_OUT)
