# Developer and CI entry points; CI calls the same targets (see .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help setup deps weaviate run test test-unit test-integration bench lint format mlflow

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all]"
	touch $@

deps: $(BIN)/.installed ## Virtual environment with the pinned dependencies

weaviate: deps ## Weaviate server binary for embedded mode (download, or build from the Go module proxy)
	$(BIN)/tqa setup

setup: deps weaviate ## Everything a fresh machine needs: venv, pinned deps, Weaviate binary, offline embedding model

run: setup ## The main job: index the installed transformers package, then ask it a question
	$(BIN)/tqa ingest
	$(BIN)/tqa ask "How do I load a model in 4-bit?"

test: setup ## Unit and integration tests (starts its own Weaviate, MLflow and BentoML on 127.0.0.1)
	$(BIN)/pytest -q tests

test-unit: deps ## Unit tests only (no services)
	$(BIN)/pytest -q tests/unit

mlflow: deps ## MLflow tracking server on 127.0.0.1:5000 (SQLite and artifacts under .tqa/mlflow, telemetry off)
	$(BIN)/tqa mlflow up

bench: setup ## Benchmarks; each prints its numbers
	$(BIN)/python -m bench.run_all

lint: deps ## ruff lint and format check
	$(BIN)/ruff check ml serving ops tests bench
	$(BIN)/ruff format --check ml serving ops tests bench

format: deps ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix ml serving ops tests bench
	$(BIN)/ruff format ml serving ops tests bench
