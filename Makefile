# The README's commands. Each does its own set-up on a fresh machine (.ci/setup is idempotent).
.PHONY: setup test lint up

setup:
	bash .ci/setup

test: setup lint
	python3 -m pytest

lint:
	ruff check bridge worker tests
	ruff format --check bridge worker tests
	mypy

up: setup
	orders up
