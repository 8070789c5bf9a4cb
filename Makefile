# rlcar: `make demo` and `make test` work on a fresh machine (they create .venv and install first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export JAX_PLATFORMS ?= cpu
export SDL_VIDEODRIVER ?= dummy
export PYGAME_HIDE_SUPPORT_PROMPT := 1

.PHONY: setup lock demo test test-fast lint bench bench-worldmodels bench-dreamer bench-carracing bench-dreamer-speed bench-worldmodels-speed bench-serve bench-demo clean

setup: $(STAMP)

# Installs come from requirements.lock: exact versions of everything `pip install -e ".[dev]"` pulls in,
# resolved for CPython $(LOCK_PYTHON) on Linux x86_64 (the ones every measurement in the README used).
# pyproject.toml keeps the ranges, for `pip install rlcar`. Another Python installs from those ranges,
# with a warning. `pip check` catches a lock that lacks a dependency added to pyproject.toml.
LOCK := requirements.lock
LOCK_PYTHON := 3.11
PIP_VERSION := 26.3
PIP_TOOLS_VERSION := 7.7.0
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "pip==$(PIP_VERSION)"
	if $(BIN)/python -c 'import sys; sys.exit("%d.%d" % sys.version_info[:2] != "$(LOCK_PYTHON)")'; then \
		$(BIN)/python -m pip install --quiet -r $(LOCK) && \
		$(BIN)/python -m pip install --quiet --no-deps -e . && \
		{ $(BIN)/python -m pip check || { echo "$(LOCK) is out of date with pyproject.toml: run make lock" >&2; exit 1; }; }; \
	else \
		echo "warning: $(LOCK) is for Python $(LOCK_PYTHON); installing from pyproject.toml's ranges instead" >&2; \
		$(BIN)/python -m pip install --quiet -e ".[dev]"; \
	fi
	touch $(STAMP)

# Re-resolve requirements.lock after editing pyproject.toml's dependencies, keeping every pin that still
# fits (pip-tools' pip-compile, run from a throwaway venv). To move pins: make lock LOCK_ARGS=--upgrade,
# or LOCK_ARGS="--upgrade-package jax --upgrade-package jaxlib".
LOCK_ARGS ?=
lock:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp" && \
	"$$tmp/bin/python" -m pip install --quiet "pip==$(PIP_VERSION)" "pip-tools==$(PIP_TOOLS_VERSION)" && \
	CUSTOM_COMPILE_COMMAND="make lock" "$$tmp/bin/pip-compile" --quiet --extra dev --strip-extras \
		--allow-unsafe --no-emit-index-url --no-emit-find-links --no-emit-trusted-host $(LOCK_ARGS) \
		--output-file $(LOCK) pyproject.toml

# The main job on a small default: train DreamerV3 on RLCar's ray sensors for DEMO_STEPS env steps
# (12-18 minutes on 2 CPU cores), then compare the trained agent with a random driver and the heuristic
# on the same held-out tracks, and render it driving. Re-running resumes the run instead of retraining.
DEMO_STEPS ?= 36000
DEMO_EVAL_EVERY ?= 6000
demo: $(STAMP)
	$(BIN)/rlcar train-dreamer --run-dir runs/demo --env-steps $(DEMO_STEPS) --eval-every-steps $(DEMO_EVAL_EVERY)
	$(BIN)/rlcar eval --run-dir runs/demo --checkpoint latest --agent dreamer --agent random --agent heuristic --episodes 10 --first-track 40
	$(BIN)/rlcar export-video --run-dir runs/demo --checkpoint latest --agent dreamer --track 40 -o runs/demo/agent.mp4
	@echo "demo: the table above compares the trained agent (runs/demo, its final state) with a random driver"
	@echo "and the heuristic on held-out tracks 40-49; runs/demo/agent.mp4 shows it driving held-out track 40."

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

# World Models on RLCar pixels over SEEDS (resumable): per-seed results.json, summary.json and curves.png
# under runs/bench-worldmodels/. WM_ITERATIONS rounds of the paper's procedure after the first.
# Then the same V and M with a controller searched in the real env (runs/bench-worldmodels-in-env/).
# Then the README's row (issue 31): V and M on 240 heuristic laps + 640 brownian episodes, 4,000 updates
# each (runs/bench-worldmodels-laps/), and C fitted to the heuristic's laps, then searched in the real
# env (runs/bench-worldmodels-imitate/): about 32 minutes a seed on the 2 cores.
WM_ITERATIONS ?= 2
bench-worldmodels: $(STAMP)
	$(BIN)/python bench/worldmodels.py --seeds $(SEEDS) --iterations $(WM_ITERATIONS)
	$(BIN)/python bench/worldmodels_in_env.py --seeds $(SEEDS)
	$(BIN)/python bench/worldmodels.py --seeds $(SEEDS) --in-env --heuristic-laps 240 --scale 4 --generations 1 --run-dir runs/bench-worldmodels-laps
	$(BIN)/python bench/worldmodels_in_env.py --seeds $(SEEDS) --source runs/bench-worldmodels-laps --run-dir runs/bench-worldmodels-imitate --imitate --controller-hidden 32 --popsize 24 --rollouts 4 --max-steps 600 --patience 100 --generations 100

# DreamerV3 learning curves on RLCar: the sensor row, then the pixel row, each over SEEDS, JOBS seeds
# at a time in their own processes (resumable: rerun to continue), then
# runs/bench-dreamer/rlcar-<obs>-summary.json and .png. The pixel row starts each replay with 48
# heuristic laps (without them the world model never learns to draw the obstacles: docs/results.md)
# and trains the `mid` preset (CarRacing-v3's row: tiny's CNN, 4x its RSSM width) at ratio 16, so that
# a seed's 100k env steps take about 80 minutes alone on the 2 cores (JOBS=1; JOBS=2 shares them).
SEEDS ?= 0 1 2
JOBS ?= 2
bench-dreamer: $(STAMP)
	$(BIN)/python bench/dreamer.py --obs sensors --seeds $(SEEDS) --jobs $(JOBS)
	$(BIN)/python bench/dreamer.py --obs pixels --seeds $(SEEDS) --jobs $(JOBS) --train-ratio 16 --prior-laps 48 \
		--size mid

# DreamerV3 and World Models on Gymnasium's CarRacing-v3 from pixels, CARRACING_HOURS of collection and
# training each per seed (resumable), scored on 20 held-out tracks; runs/bench-carracing/<agent>.png.
# World Models searches its controller in the real env (bench/carracing.py --controller-in dream: the dream).
CARRACING_SEEDS ?= 0
CARRACING_HOURS ?= 2.5
# envpool: train on EnvPool's CarRacing-v3 (pip install ".[envpool]"); evaluation stays Gymnasium's.
# The World Models row of the README: make bench-carracing CARRACING_BACKEND=envpool CARRACING_HOURS=2.0
# CARRACING_DREAMER= CARRACING_EVAL_EPISODES=5 (--dreamer-patience needs the Gymnasium backend).
CARRACING_BACKEND ?= gymnasium
# Held-out episodes per curve point, for both agents: 10 as in DreamerV3's row (about +-60-80 of noise).
CARRACING_EVAL_EPISODES ?= 10
# DreamerV3's row (issue 28): the `mid` preset (the RSSM and heads widened from tiny's 64 units to 256,
# tiny's CNN kept), action repeat 4, 100-frame patience, a bounded actor mean; in 2.5 hours its
# best-ranked checkpoint (160k frames) scored 833 on held-out tracks 40-59.
CARRACING_DREAMER ?= --dreamer-size mid --dreamer-action-repeat 4 --dreamer-patience 100 \
	--dreamer-set actor_mean_limit=0.98 --dreamer-eval-every-steps 20000
bench-carracing: $(STAMP)
	$(BIN)/python bench/carracing.py --agent dreamer --agent worldmodels --seeds $(CARRACING_SEEDS) --hours $(CARRACING_HOURS) --backend $(CARRACING_BACKEND) \
		--eval-episodes $(CARRACING_EVAL_EPISODES) $(CARRACING_DREAMER)

# DreamerV3 update FLOPs (XLA cost analysis), matmul peak, MFU and replayed steps/s per preset.
bench-dreamer-speed: $(STAMP)
	$(BIN)/python bench/dreamer_speed.py

bench-worldmodels-speed: $(STAMP)
	$(BIN)/python bench/worldmodels_speed.py

bench-serve: $(STAMP)
	$(BIN)/python bench/serve.py

# `make demo`'s settings on DEMO_SEEDS seeds: each seed's final state on 20 held-out tracks (40-59).
DEMO_SEEDS ?= 0 1 2 3 4
bench-demo: $(STAMP)
	$(BIN)/python bench/demo_seeds.py --seeds $(DEMO_SEEDS) --env-steps $(DEMO_STEPS) --eval-every-steps $(DEMO_EVAL_EVERY)

clean:
	rm -rf $(VENV) runs .pytest_cache
