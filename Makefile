# mfg-vision: `make demo` and `make test` each set up .venv when it is missing or stale.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
MFG_HOME ?= $(CURDIR)/.mfg
export MFG_HOME
DEMO_DIR := demo-out
UI_PORT ?= 3000

.PHONY: demo test ui bench clean-home help

help:
	@echo "make demo   - set up, generate a sample line, onboard it (train, validate, export, register)"
	@echo "make test   - set up and run the tests"
	@echo "make ui     - open the Dagster UI on http://127.0.0.1:$(UI_PORT)"
	@echo "make bench DATA=../shared/datasets/neu_det LAYOUT=neu - onboard benchmark (3 seeds) into BENCHMARKS.md"

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 or pass PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.lock requirements-nodeps.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo: $(VENV)/.installed
	rm -rf $(DEMO_DIR)/sample-line
	$(BIN)/mfgv sample-line $(DEMO_DIR)/sample-line --seed 7 --good-images 600 --images-per-class 60 --image-size 128
	$(BIN)/mfgv onboard $(DEMO_DIR)/sample-line --task classify --format folders \
		--line line1 --variant bracket-a --good-class good --report-json $(DEMO_DIR)/report.json

test: $(VENV)/.installed
	$(BIN)/python -m pytest

ui: $(VENV)/.installed
	$(BIN)/mfgv init
	DAGSTER_HOME=$(MFG_HOME)/dagster $(BIN)/dagster dev -h 127.0.0.1 -p $(UI_PORT) -w workspace.yaml

LAYOUT ?= folders
GOOD ?=
bench: $(VENV)/.installed
	@test -n "$(DATA)" || { echo "usage: make bench DATA=path/to/dataset [LAYOUT=folders|neu|magnetic_tile] [GOOD=good-class]"; exit 1; }
	$(BIN)/python bench/onboard_benchmark.py $(DATA) --layout $(LAYOUT) $(if $(GOOD),--good-class $(GOOD)) --seeds 0 1 2 --write BENCHMARKS.md
