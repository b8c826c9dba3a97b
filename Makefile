# Developer and CI entry points; CI calls the same targets (see .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.DEFAULT_GOAL := help
.PHONY: help setup deps weaviate run test test-unit test-integration bench lint format mlflow dataset eval register sync browser
REPO_PATH ?= .
EVAL_OUT ?= .tqa/eval-report

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

# PYTEST_WORKERS=2 (the default): whole files to two pytest-xdist processes, in collection order (tests/conftest.py
# puts the slowest first), so a file that mostly waits (machines booting, servers starting) runs beside one that
# computes; 0: one test at a time in this process. PYTEST_ARGS: more options (e.g. --durations=30).
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=
PYTEST_PARALLEL = $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder)

test: setup infra-tools browser release-tools ## Unit and integration tests (starts its own Weaviate, MLflow, BentoML, Ansible targets on 127.0.0.1)
	$(BIN)/pytest -q $(PYTEST_PARALLEL) $(PYTEST_ARGS) tests

test-unit: deps ## Unit tests only (no services)
	$(BIN)/pytest -q tests/unit

test-integration: setup infra-tools browser release-tools ## Integration tests only (real Weaviate, MLflow, BentoML, Ansible targets on 127.0.0.1)
	$(BIN)/pytest -q $(PYTEST_PARALLEL) $(PYTEST_ARGS) tests/integration

browser: ## Headless Chromium + chromedriver and Prometheus + promtool (Debian packages) for the web page and monitoring tests
	bash scripts/ui/install-browser.sh

dataset: deps ## Build the QA dataset from the index (JSONL + manifest under the data dir)
	$(BIN)/tqa dataset build

eval: deps ## Full offline evaluation, logged to MLflow; fails on a missed bar (EVAL_REPORT=FILE copies the Markdown)
	$(BIN)/tqa eval run --out $(EVAL_OUT)
	$(if $(EVAL_REPORT),cp $(EVAL_OUT)/report.md $(EVAL_REPORT))

VERSION_FILE ?=
register: deps ## Register the latest eval run (pinning the bento TQA_BENTO names); moves `staging` when it beats `production`
	$(BIN)/tqa register $(if $(VERSION_FILE),--version-file $(VERSION_FILE))

# Continuous training (ops/ct/, settings in ops/ct/ct.yaml) and the generator's LoRA run (ml/train/configs/).
.PHONY: ct ct-status train-generator
CT_CONFIG ?= ops/ct/ct.yaml
CT_ARGS ?=
GENERATOR_CONFIG ?= ml/train/configs/qwen14b-lora.yaml
ACCELERATE_CONFIG ?= ml/train/configs/accelerate/ddp.yaml

ct: deps ## One continuous-training cycle: sync, dataset version, retrain what fired, eval, gated registration, canary
	$(BIN)/tqa ct run --config $(CT_CONFIG) $(CT_ARGS)

ct-status: deps ## Each continuous-training trigger against its threshold, the dataset version, the last cycle
	$(BIN)/tqa ct status --config $(CT_CONFIG)

train-generator: deps ## LoRA of the generator under accelerate launch (GENERATOR_CONFIG, ACCELERATE_CONFIG; GPUs), gated
	$(BIN)/accelerate launch --config_file $(ACCELERATE_CONFIG) -m ml.train.generator $(GENERATOR_CONFIG) --register

sync: deps ## Bring the index of the checkout at REPO_PATH to its new commits (and issues/PRs when a token is set)
	$(BIN)/tqa sync --path $(REPO_PATH)

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

# A venv of its own: the audit reads constraints.txt as pinned and installs none of it.
AUDIT_VENV ?= .venv-audit
.PHONY: audit
audit: ## pip-audit of every pinned dependency, judged by security/audit-policy.yml (needs PyPI's JSON API; CI runs it)
	test -x $(AUDIT_VENV)/bin/python || python3 -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/python -m pip install -q pip-audit==2.10.1 PyYAML==6.0.4
	PYTHONPATH=. $(AUDIT_VENV)/bin/python -m ops.security.audit --requirements constraints.txt

# Infrastructure (infra/, ansible/, .github/): tools built from the Go module proxy into ~/.cache/tqa-tools.
ENV ?= staging
TOOLS_DIR ?= $(HOME)/.cache/tqa-tools
.PHONY: infra-tools infra-lint infra-check infra-plan infra-apply infra-configure

infra-tools: ## OpenTofu, the OpenStack provider, actionlint, debootstrap and the Debian 12 test target (cached)
	bash scripts/infra/install-tools.sh
	bash scripts/infra/build-target-rootfs.sh

infra-lint: deps infra-tools ## tofu fmt/validate/test, actionlint + workflow schema, ansible-lint and syntax check
	bash scripts/infra/check-terraform.sh
	$(TOOLS_DIR)/bin/actionlint .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	cd ansible && $(abspath $(BIN))/ansible-lint
	cd ansible && ANSIBLE_CONFIG=ansible.cfg $(abspath $(BIN))/ansible-playbook --syntax-check -i inventory/$(ENV) site.yml

infra-check: infra-lint ## infra-lint, then the infra tests (role application on a Debian 12 target included)
	$(BIN)/pytest -q -p no:cacheprovider tests/unit/test_infra_*.py tests/integration/test_infra_*.py

infra-plan: deps ## tofu plan of environment $(ENV) (its workspace, infra/$(ENV).tfvars and lease)
	$(BIN)/tqa infra plan $(ENV)

infra-apply: deps ## tofu apply of environment $(ENV), then write its Ansible inventory
	$(BIN)/tqa infra apply $(ENV)
	$(BIN)/tqa infra inventory $(ENV)

infra-configure: deps ## Ansible site playbook on environment $(ENV), secrets from SECRETS=<vault file>
	$(BIN)/tqa infra configure $(ENV) $(if $(SECRETS),--secrets-file $(SECRETS))

# Releases (ops/release/, ops/load/): HAProxy splits traffic between two `tqa serve` slots, Prometheus feeds the
# canary analysis, MLflow aliases say which version is staging, canary and production.
.PHONY: release-tools bento release-deploy loadtest canary promote rollback
TARGET ?= $(TQA_LOAD_TARGET)
LOADTEST_OUT ?= artifacts/loadtest
CANARY_STEPS ?= 5,25,50
CANARY_INTERVAL ?= 60

BENTO_TAG_FILE ?=
bento: deps ## Build the RAG and Qwen runner bentos offline, tagged with the git SHA, into dist/bento; prints the tags
	bash scripts/release/build-bentos.sh $(BENTO_TAG_FILE)

release-tools: ## HAProxy and Prometheus (Debian packages) for releases and their tests
	bash scripts/release/install-tools.sh

RELEASE_ENV ?= canary
VERSION ?=
release-deploy: deps release-tools ## Serve VERSION (default: the staging candidate) as RELEASE_ENV (staging, canary, production)
	$(BIN)/tqa release deploy --env $(RELEASE_ENV) $(if $(VERSION),--version $(VERSION))

loadtest: deps ## Locust persona mix against TARGET=URL, headless; CSV + HTML in artifacts/loadtest; exit 1 on a missed threshold
	$(BIN)/python -m ops.load.gate --target "$(TARGET)" --out $(LOADTEST_OUT)

canary: deps release-tools ## Canary the deployed candidate, CANARY_STEPS every CANARY_INTERVAL s; rolls back on a breach, else holds
	$(BIN)/tqa release canary --steps $(CANARY_STEPS) --interval $(CANARY_INTERVAL) --no-promote

promote: deps ## Move `production` to the canary that passed every step
	$(BIN)/tqa release promote

rollback: deps ## Now: 100% to the last good production, aliases moved back
	$(BIN)/tqa release rollback

# ci.yml's jobs replayed here as on a GitHub runner (ops/ci/replay.py): each job as a fresh unprivileged user with
# password-less sudo, in a clone of HEAD, every step timed. CI_REPLAY_ARGS: e.g. --warm-cache, --skip test:7, --list.
CI_JOBS ?= lint,test,audit,infra,eval
CI_REPLAY_ARGS ?=
.PHONY: ci-replay
ci-replay: deps ## ci.yml's CI_JOBS as a fresh user with sudo in a clone of HEAD (needs root); per-step pass/fail and seconds
	$(if $(filter 0,$(shell id -u)),,sudo) $(BIN)/python -m ops.ci.replay --jobs $(CI_JOBS) $(CI_REPLAY_ARGS)
