# Two commands do everything: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_PORT ?= 8765
SERVE_PORT ?= 8001

.PHONY: install test lint demo browser bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install lint
	$(BIN)/pytest

demo: install
	$(BIN)/python -m tests.site demo --port $(DEMO_PORT) --serve-port $(SERVE_PORT)

clean:
	rm -rf $(VENV) archive/micropause.db* archive/captures archive/exports
