# The two commands: `make demo` and `make test`. Each sets up this checkout first (scripts/setup.sh:
# Debian packages and .venv, only what is missing or changed), so both work on a fresh Debian 12/13.
SHELL := /bin/bash
VENV := .venv
# Extra arguments: make demo DEMO_ARGS="--villages 1000"; make test PYTEST_ARGS="-m unit -x"
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: all setup test demo demo-node lint format typecheck unit clean-demo help

all: test

help:
	@echo "make test   set up, then ruff, mypy and pytest (unit, integration, e2e) with a summary"
	@echo "make demo   set up, then run a sample Zhejiang network: 7 federated nodes on this machine"
	@echo "make demo-node  the same sample network on one node (every application, no federation)"
	@echo "make setup  only the set-up (Debian packages, .venv)"

setup:
	@scripts/setup.sh

test: setup
	@scripts/test.sh $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/vmesh demo --network $(DEMO_ARGS)

demo-node: setup
	$(VENV)/bin/vmesh demo $(DEMO_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: setup
	$(VENV)/bin/ruff format src tests bench

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -m unit $(PYTEST_ARGS)

clean-demo:
	rm -rf demo-data demo-network
