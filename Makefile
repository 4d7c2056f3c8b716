# fraudstream — every target installs what it needs on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INFRA := deploy/local/infra.sh

.PHONY: compose-check k8s-check install lock prepare up down status reset demo test lint format types unit integration e2e gpu bench chaos clean

install: $(STAMP)

# constraints.txt pins every package to the versions the figures in docs/ were measured
# with; regenerate it with `make lock` after changing a dependency.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable > constraints.txt

# Kafka jars (Maven) and redis-server (apt), once per machine.
prepare: $(STAMP)
	PYTHON=$(PY) bash $(INFRA) prepare

# docker-compose.yml must stay valid: `docker compose` when the plugin is there,
# else Debian's docker-compose (installed once) validates the same file.
compose-check:
	@if docker compose version >/dev/null 2>&1; then docker compose -f docker-compose.yml config -q; \
	else command -v docker-compose >/dev/null || { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; }; \
	docker-compose -f docker-compose.yml config -q; fi
	@echo "docker-compose.yml: valid"

up: prepare
	PYTHON=$(PY) bash $(INFRA) up

down:
	PYTHON=$(PY) bash $(INFRA) down

status:
	PYTHON=$(PY) bash $(INFRA) status

# The broker keeps its data across `up`/`down` and crashes; this deletes it (services stopped).
reset:
	PYTHON=$(PY) bash $(INFRA) reset

demo: up
	$(BIN)/fraudstream demo

# Kubernetes manifests against the bundled API schemas (strict: unknown fields fail).
k8s-check: $(STAMP)
	$(BIN)/kubernetes-validate --strict --quiet deploy/k8s/*.yaml && echo "deploy/k8s: valid"

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(PY) -m stream.config.reference --check

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(PY) -m stream.config.reference

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# The whole suite that needs no GPU: format and lint, types (tests included), unit, integration and e2e tiers.
# The test session starts its own broker and Redis on free ports (tests/conftest.py).
test: prepare lint types compose-check k8s-check
	$(BIN)/pytest -m 'not gpu'

gpu: $(STAMP)
	$(BIN)/pytest -m gpu -o addopts='-ra --strict-markers --strict-config'

bench: up
	bash bench/peer/setup.sh
	$(PY) -m bench

# The long chaos run: its own broker and Redis, the three services as processes, faults
# drawn from SEED for MINUTES; prints the table, writes JSON under out/chaos/.
SEED ?= $(shell date +%s)
MINUTES ?= 20
chaos: prepare
	$(PY) -m stream.ops.chaos --seed $(SEED) --minutes $(MINUTES) --out out/chaos

clean: down
	rm -rf .run artifacts data out bench/results
