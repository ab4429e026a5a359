# Two commands do everything: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_PORT ?= 8765
SERVE_PORT ?= 8001

.PHONY: install test lint demo browser replay-tools bench dist docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install lint browser replay-tools
	$(BIN)/pytest

CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)

# Debian's Chromium for tests/test_browser.py: Playwright's own browser download needs the
# internet, apt-get only the package mirror. Fails when no browser can be had: a browser test
# that cannot run is a failure, never a skip.
browser:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; } || true
	@test -x $(CHROMIUM) || { echo "make browser: could not install chromium at $(CHROMIUM)" >&2; exit 1; }

# npm for tests/test_replaywebpage.py, which fetches ReplayWeb.page's package from the npm
# registry (pywb comes from PyPI): both are installed by the tests into .cache/replay-tools.
replay-tools:
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm; }

demo: install
	$(BIN)/python -m tests.site demo --port $(DEMO_PORT) --serve-port $(SERVE_PORT)

# The generated parts of docs/ (cli.md, schema.md's tables), from each command's --help and the
# schema's column descriptions, and README.md's tour, replayed against the fixture site;
# tests/test_docs.py and tests/test_tour.py fail when they are stale.
docs: install
	$(BIN)/python -m tests.reference

# The sdist and the wheel, in dist/. `python -m build` builds the sdist, then the wheel from it,
# in an isolated environment that pip fills from the package index.
dist: install
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# Timings need a quiet machine, so neither `make test` nor .ci/run runs this.
# BENCH_ARGS=--quick for a ~30 s run; --only crawl,extraction,scale,incremental for some suites.
bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) dist .cache archive/micropause.db* archive/captures archive/exports
