# Three commands do everything on a fresh machine (only Python >= 3.11 and pip needed):
#   make demo   run the whole platform (19 bots, exchange, risk guard) on the in-memory backend
#   make test   lint, type-check and run the whole test suite (real nats-server and chromium included)
#   make live   the demo slowed down, with the dashboard on (docs/ui.md)
# and:
#   make paper  the paper-trading demo alone (11 bots, configs/dev.toml, hot reload)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# The browser tests drive Debian's chromium through Playwright for Python (never a browser Playwright
# downloads); the AsyncAPI test validates against the official schema from npm's @asyncapi/specs.
# Both are installed once, when missing (apt-get and npm are quick no-ops after that).
CHROMIUM        ?= /usr/bin/chromium
ASYNCAPI_SPECS  := @asyncapi/specs@6.11.1
ASYNCAPI_SCHEMA := $(VENV)/npm/node_modules/@asyncapi/specs/schemas/3.0.0.json
LIVE_SPEED      ?= 300

.PHONY: demo paper test lint live bench bench-nats clean

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

test: lint $(CHROMIUM) $(ASYNCAPI_SCHEMA)
	CITARION_CHROMIUM=$(CHROMIUM) CITARION_ASYNCAPI_SCHEMA=$(ASYNCAPI_SCHEMA) $(BIN)/pytest

live: $(STAMP)
	$(BIN)/citarion-host run --config configs/dev.toml --ui --speed $(LIVE_SPEED) --no-reload

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "the browser tests need Debian's chromium package at $(CHROMIUM)"; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

$(ASYNCAPI_SCHEMA):
	@command -v npm >/dev/null || { echo "the AsyncAPI test needs npm (Node.js) to install $(ASYNCAPI_SPECS)"; exit 1; }
	npm install --silent --no-audit --no-fund --no-save --prefix $(VENV)/npm $(ASYNCAPI_SPECS)

bench: $(STAMP)
	$(BIN)/citarion-host bench

bench-nats: $(STAMP)
	$(BIN)/citarion-host bench --case core --case jetstream --case latency

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
