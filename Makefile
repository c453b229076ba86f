# initstudy: `make train report` runs the default study and writes its report; `make test` runs the tests.
# `make train` trains one run per core (at most 4) in threads; `make train WORKERS=2` uses two worker processes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STUDY  ?= default
RUNS   ?= runs
WORKERS ?=

.PHONY: install train report test bench clean

install: $(STAMP)

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/initstudy train --study $(STUDY) --runs-dir $(RUNS) $(if $(WORKERS),--workers $(WORKERS))

report: $(STAMP)
	$(BIN)/initstudy report --study $(STUDY) --runs-dir $(RUNS) --pdf

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/initstudy bench

clean:
	rm -rf $(VENV) build *.egg-info
