# The two commands a new machine needs (both set everything up in .venv on first use):
#   make local   run the whole service locally on moto (prints `ready: http://127.0.0.1:PORT/v1`)
#   make test    run the whole test suite offline
# Pass options to local mode with ARGS, e.g. make local ARGS="--port 9000 --upstream-url http://host/v1"
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# The browser the console's tests drive (tools/batchgate_local/chromium.py reads the same variable).
BATCHGATE_CHROMIUM ?= /usr/bin/chromium
export BATCHGATE_CHROMIUM

.PHONY: local test setup chromium
setup: $(STAMP)

# Set-up writes only to stderr: the stdout of `make local` is its one `ready:` line, which scripts read.
$(STAMP): pyproject.toml package.json package-lock.json layers/requirements.txt
	@echo "setting up .venv and node_modules (first use, or a dependency changed)" >&2
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV) >&2
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]' >&2
	@npm ci --no-audit --no-fund --loglevel=error >&2
	@$(VENV)/bin/python -m infra.constructs.layer .local/layer-wheels >&2
	@touch $(STAMP)

# The console's browser test (tests/browser) drives Debian's Chromium; Playwright never downloads one.
# Only `make test` needs it (`make local` serves the console to whatever browser you have).
chromium:
	@test -x $(BATCHGATE_CHROMIUM) || { command -v apt-get >/dev/null \
		|| { echo "$(BATCHGATE_CHROMIUM) is missing and there is no apt-get: install Chromium (Debian package chromium) or set BATCHGATE_CHROMIUM=/path/to/chromium" >&2; exit 1; }; \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

local: $(STAMP)
	@$(VENV)/bin/batchgate local $(ARGS)

test: $(STAMP) chromium
	$(VENV)/bin/pytest $(PYTEST_ARGS)
