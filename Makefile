# Set-up lives here so that `make run` and `make test` work on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
# Re-install when the project's requirements change, not on every call.
STAMP := $(VENV)/.segpipe-installed

.PHONY: run test test-fast lint clean-results

# Exact versions from requirements.lock (constraints), so every machine gets the same.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[test]'
	touch $(STAMP)

# The demo draws the report too (target draw_report); a plain run stops at the tables.
run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) all draw_report $(ARGS)

test: $(STAMP)
	tools/install-browser.sh
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest $(PYTEST_ARGS)

# The inner loop: unit tests and doctests, no end-to-end Snakemake runs (59 s on 2 cores).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e" -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules

clean-results:
	rm -rf results logs .snakemake/metadata

# The config reference, config/README.md, from the schema's descriptions and defaults
# (tests/test_config_reference.py fails while it is stale).
.PHONY: docs
docs: $(STAMP)
	PYTHONPATH=src $(BIN)/python -m segpipe.config_reference
