# Two commands do all set-up on a fresh machine:
#   make run   — create .venv, install requirements, load the bundled demo data, start the studio
#   make test  — the same installs (plus Chromium and the local GGUF models), then every test
# Other targets: lint (ruff), screenshots (the README's images), bench, demo, clean.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements-installed
LOCAL  := $(VENV)/.local-models-installed
PORT   ?= 8501

.PHONY: run test lint screenshots setup demo bench local-models system-deps clean

# The exact locks (runtime + test), then this checkout as an editable package (its dependencies
# are already there: --no-deps; setuptools is in the lock: --no-build-isolation).
$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(LOCAL): $(STAMP) scripts/install_local_models.sh scripts/local_models_constraints.txt
	VENV=$(VENV) PYTHON=$(abspath $(PY)) bash scripts/install_local_models.sh
	touch $(LOCAL)

setup: $(STAMP)

local-models: $(LOCAL)

system-deps:
	bash scripts/install_system_deps.sh

demo: $(STAMP)
	$(PY) -m evoroute demo

run: $(STAMP)
	$(PY) -m evoroute demo
	$(PY) -m ui.serve --server.port $(PORT)

test: $(STAMP) $(LOCAL) system-deps
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(PY) -m ruff check .

# Regenerates docs/screenshots/*.png from the real studio in headless Chromium.
screenshots: $(STAMP) system-deps
	$(PY) -m scripts.screenshots docs/screenshots

bench: $(STAMP)
	$(PY) -m evoroute bench --data routerbench --seeds 5 --json var/bench.json

clean:
	rm -rf var .pytest_cache .hypothesis build dist *.egg-info
