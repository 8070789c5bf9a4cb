# rlcar: `make demo` and `make test` work on a fresh machine (they create .venv and install first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export JAX_PLATFORMS ?= cpu
export SDL_VIDEODRIVER ?= dummy
export PYGAME_HIDE_SUPPORT_PROMPT := 1

.PHONY: setup demo test test-fast lint bench bench-worldmodels bench-dreamer bench-serve clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rlcar eval --agent heuristic --episodes 10
	$(BIN)/rlcar eval --agent random --episodes 10
	mkdir -p runs/demo
	$(BIN)/rlcar export-video --agent heuristic -o runs/demo/heuristic.mp4
	@echo "demo output: runs/demo/heuristic.mp4 (a heuristic lap on held-out track 0)"

# Everything, the slow end-to-end and fault-injection tests included: what CI runs.
test: $(STAMP)
	$(BIN)/python -m pytest

# Everything not marked slow (about a minute on 2 cores): the loop while editing.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check rlcar_core rlcar_cli tests bench
	$(BIN)/ruff format --check rlcar_core rlcar_cli tests bench

bench: $(STAMP)
	$(BIN)/python bench/simulator.py

bench-worldmodels: $(STAMP)
	$(BIN)/python bench/worldmodels.py

bench-dreamer: $(STAMP)
	$(BIN)/python bench/dreamer.py

# DreamerV3 update FLOPs (XLA cost analysis), matmul peak, MFU and replayed steps/s per preset.
bench-dreamer-speed: $(STAMP)
	$(BIN)/python bench/dreamer_speed.py

bench-serve: $(STAMP)
	$(BIN)/python bench/serve.py

clean:
	rm -rf $(VENV) runs .pytest_cache
