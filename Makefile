# Two commands do all set-up on a fresh machine:
#   make run   — create .venv, install requirements, load the bundled demo data, start the studio
#   make test  — the same installs (plus Chromium and the local GGUF models), then every test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements-installed
LOCAL  := $(VENV)/.local-models-installed
PORT   ?= 8501

.PHONY: run test setup demo bench local-models system-deps clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
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
	$(PY) -m streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT)

test: $(STAMP) $(LOCAL) system-deps
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m evoroute bench --data routerbench --seeds 5 --json var/bench.json

clean:
	rm -rf var .pytest_cache .hypothesis
