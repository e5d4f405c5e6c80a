# tonearm task runner. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT := out
WEB_OUT := src/tonearm/server/static
WEB_SOURCES := $(shell find web/src -type f 2>/dev/null) web/index.html web/package.json web/tsconfig.json web/vite.config.ts

.DEFAULT_GOAL := help

##@ Main

run: $(STAMP) web ## Serve the library (the demo music, or MUSIC=folder), the jobs and the web player on http://127.0.0.1:8765/
	@mkdir -p $(OUT)
	$(BIN)/tonearm serve $(if $(MUSIC),--library "$(MUSIC)",--library demo) --db $(OUT)/library.db --data-dir $(OUT)/server

test: $(STAMP) postgres web lint ## Run ruff, mypy and the whole test suite (SQLite, PostgreSQL, the web player in Chromium)
	$(BIN)/python -m pytest -q

postgres: ## Make sure PostgreSQL's server programs exist (the tests start their own server)
	@compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "the tests need PostgreSQL: sudo apt-get install postgresql"; exit 2; fi; }

web: $(WEB_OUT)/index.html ## Build the web player (npm ci + vite build in web/) when missing or older than its sources

$(WEB_OUT)/index.html: web/node_modules/.package-lock.json $(WEB_SOURCES)
	cd web && npm run build
	@touch $@

web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "building the web player needs Node.js 20.19+ and npm: install them first"; exit 2; }
	cd web && npm ci --no-audit --no-fund
	@touch $@

##@ Development

lint: $(STAMP) ## ruff (lint + format check) and mypy strict
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP) ## Run the benchmarks and print their figures
	$(BIN)/python benchmarks/master.py

format: $(STAMP) ## Apply ruff's formatter and autofixes
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

venv: $(STAMP) ## Create .venv and install pinned dependencies

clean: ## Remove the virtual environment and build outputs
	rm -rf $(VENV) $(OUT) build *.egg-info src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
	rm -rf web/node_modules $(WEB_OUT)

help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z_-]+:.*##/ {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "tonearm needs Python 3.11+ (python3)"; exit 2; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); \
	  else echo "python3 -m venv failed: install python3-venv (sudo apt-get install python3-venv)"; exit 2; fi; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

.PHONY: run test postgres web lint bench format venv clean help
