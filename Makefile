# Liftwatch — the README's commands. `make demo` and `make test` set up everything they need
# on a fresh Debian machine (venv, TimescaleDB build, Mosquitto) and are safe to repeat.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help setup venv services test lint demo bench chaos eval clean

help:
	@echo "make test   set up (venv, TimescaleDB, Mosquitto) and run lint + the test suite"
	@echo "make demo   set up, then run the local stack and print where to look"
	@echo "make bench  run the benchmarks in bench/ (minutes; prints tables with ratios)"
	@echo "make chaos  ingest under broker restarts, database crashes and kill -9: one ingestor, then the pair (minutes)"
	@echo "make eval   analytics scored against the simulator's truth, 2,000 units x 60 days (about 2 hours)"
	@echo "make lint   ruff"
	@echo "make clean  remove the venv and caches"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

services:
	bash scripts/install-timescaledb.sh
	bash scripts/start-services.sh

setup: venv services

lint: venv
	$(BIN)/ruff check liftwatch ingest maintenance analytics simulators tests bench scripts

test: setup lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: setup
	bash scripts/demo.sh

bench: setup
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/api.py

chaos: setup
	$(BIN)/python bench/chaos.py
	$(BIN)/python bench/chaos.py --replicas 2

eval: setup
	$(BIN)/python bench/analytics_eval.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
