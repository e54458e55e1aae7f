# The README's commands. Each does its own set-up on a fresh machine (.ci/setup is idempotent) and runs
# inside the project virtualenv it makes (VENV, default .venv): nothing is installed into the system Python.
VENV ?= .venv
BIN := $(VENV)/bin
# Test processes (pytest-xdist): tests mostly wait on real services, so two share two cores well.
TEST_WORKERS ?= 2
export VENV
.PHONY: setup test lint up canary

setup:
	bash .ci/setup

# The contract tests first, on their own: a private kombu, Celery, billiard or redis-py name we rely on
# that is gone fails here with what to re-read (tests/contract), before any pipeline test runs.
test: setup lint
	$(BIN)/python -m pytest tests/contract
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --ignore=tests/contract --durations=40

# Not part of CI: the contract tests on the newest kombu and Celery 5.x, in a scratch virtualenv.
# Run it before moving a pin (README, "Pinned versions").
canary:
	bash .ci/canary

lint:
	$(BIN)/ruff check orders bridge worker tests
	$(BIN)/ruff format --check orders bridge worker tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/deptry orders bridge worker
	@# imports that no declared requirement brings in (the shared tool, where this checkout has it)
	@if [ -x ../shared/tools/undeclared-imports ]; then $(BIN)/python ../shared/tools/undeclared-imports; fi

# Installs only what `orders up` runs (not the tests' tools). BROKER=kafka: Apache Kafka instead of Tansu,
# with Java and its jars.
BROKER ?= tansu
up:
	bash .ci/setup up $(BROKER)
	$(BIN)/orders up --broker $(BROKER)
