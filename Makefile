# Two commands do everything on a fresh machine (only Python >= 3.11 and pip needed):
#   make demo   run the whole platform (19 bots, exchange, risk guard) on the in-memory backend
#   make test   lint, type-check and run the whole test suite (real nats-server included)
# and:
#   make paper  the paper-trading demo alone (11 bots, configs/dev.toml, hot reload)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo paper test lint bench bench-nats clean

$(STAMP): pyproject.toml plugins/citarion-bots/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -e plugins/citarion-bots
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/citarion-host --config configs/platform.toml

paper: $(STAMP)
	$(BIN)/citarion-host --config configs/dev.toml

lint: $(STAMP)
	$(BIN)/ruff check citarion_host plugins tests
	$(BIN)/ruff format --check citarion_host plugins tests
	$(BIN)/mypy
	$(BIN)/mypy --strict plugins/citarion-bots/citarion_bots

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/citarion-host bench

bench-nats: $(STAMP)
	$(BIN)/citarion-host bench --case core --case jetstream --case latency

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
