# The two commands a new machine needs (both set everything up in .venv on first use):
#   make local   run the whole service locally on moto (prints `ready: http://127.0.0.1:PORT/v1`)
#   make test    run the whole test suite offline
# Pass options to local mode with ARGS, e.g. make local ARGS="--port 9000 --upstream-url http://host/v1"
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: local test setup
setup: $(STAMP)

$(STAMP): pyproject.toml package.json package-lock.json layers/requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	npm ci --no-audit --no-fund --loglevel=error
	$(VENV)/bin/python -m infra.constructs.layer .local/layer-wheels
	touch $(STAMP)

local: $(STAMP)
	@$(VENV)/bin/batchgate local $(ARGS)

test: $(STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)
