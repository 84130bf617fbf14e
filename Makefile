# Two commands for a newcomer: `make run` (server + web demo) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test lint bench clean

run: $(VENV)/.installed-run
	$(BIN)/switchboard serve $(ARGS)

test: $(VENV)/.installed-test
	scripts/ensure-chromium
	scripts/ensure-coturn
	scripts/ensure-libsrtp-dev
	scripts/ensure-espeak-ng
	scripts/ensure-postgresql
	scripts/in-netns $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check switchboard tests benchmarks
	$(BIN)/ruff format --check switchboard tests benchmarks
	$(BIN)/mypy switchboard

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Switchboard needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[bench]'
	touch $@ $(VENV)/.installed-run

# Quick benchmarks (< 5 minutes in all; docs/performance.md): the forwarding hot path
# in-process, then the real server under load beside the MediaRelay baseline and Janus
# (installed by scripts/ensure-janus when possible). Tables on stdout; JSON and the chart in
# benchmarks/results/.
bench: $(VENV)/.installed-bench
	scripts/ensure-libsrtp-dev
	$(BIN)/python benchmarks/hot_path.py --quick --path aiortc,fast \
		--json benchmarks/results/hot_path.json
	$(BIN)/python benchmarks/hot_path.py --quick --ingress socket --loop asyncio,uvloop \
		--json benchmarks/results/hot_path_loops.json
	scripts/ensure-janus
	scripts/in-netns $(BIN)/python benchmarks/load.py --quick --compare \
		--json benchmarks/results/load.json --chart benchmarks/results/load.png

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
