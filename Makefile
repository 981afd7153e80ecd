# keyturn — `make run` serves on 127.0.0.1:8000, `make test` runs everything CI runs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell sha1sum pyproject.toml | cut -c1-12)
RUN_STAMP := $(VENV)/.run-$(HASH)
DEV_STAMP := $(VENV)/.dev-$(HASH)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck layers pytest bench fleet clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The server and every adapter, for `make run`.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[all]'
	rm -f $(VENV)/.run-*
	touch $@

# Everything `make test` needs on top.
$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.dev-*
	touch $@

run: $(RUN_STAMP)
	$(BIN)/keyturn migrate
	$(BIN)/keyturn serve --host $(HOST) --port $(PORT)

test: $(DEV_STAMP) lint typecheck layers pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

layers: $(DEV_STAMP)
	$(BIN)/lint-imports

pytest: $(DEV_STAMP)
	$(BIN)/pytest

# The benchmark suite (docs/performance.md): loopback only, at most 20 minutes; installs wrk, node and
# the Express peer if missing; writes bench/results/latest.md, latest.png and latest.json.
bench: $(DEV_STAMP)
	bash bench/run.sh

# Three instances behind nginx on 127.0.0.1:8100, one PostgreSQL, one Redis (docs/deploy.md).
fleet: $(RUN_STAMP)
	scripts/fleet.sh

clean:
	rm -rf $(VENV) .keyturn .fleet .pytest_cache .mypy_cache .ruff_cache
