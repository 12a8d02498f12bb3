# Two commands set everything up:  make demo  and  make test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 6006
LOGDIR ?= runs/demo
EPOCHS ?=

.PHONY: demo test lint frontend check-bundle venv clean

venv: $(VENV)/.installed

# torch first, pinned: a plain `torch` requirement can pull a multi-GB CUDA build,
# while torch==2.13.0 is a CPU build the machines here have locally.
$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,demo]'
	touch $@

frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

# Rebuilds the committed bundle in tb_lstm_states/static/ from frontend/src.
frontend: frontend/node_modules/.installed
	cd frontend && npm run --silent build

# Fails when the committed bundle is not what the sources build to.
check-bundle: frontend
	cd frontend && npm test --silent
	git diff --exit-code --stat -- tb_lstm_states/static || \
	  (echo "tb_lstm_states/static/ is stale: run 'make frontend' and commit the bundle" >&2; exit 1)
	test -z "$$(git status --porcelain -- tb_lstm_states/static)" || \
	  (echo "tb_lstm_states/static/ has uncommitted files: run 'make frontend' and commit them" >&2; exit 1)

# ruff (lint and format) and mypy, configured in pyproject.toml.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: venv lint check-bundle
	$(PY) -m pytest tests

# Trains the demo into $(LOGDIR) unless a complete one is there (an interrupted one is
# redone), then serves it. EPOCHS= changes the epochs per run, PORT= the port.
demo: venv
	@if [ -f $(LOGDIR)/.demo-complete ] && [ -z "$(EPOCHS)" ] && \
	  [ "$$(cat $(LOGDIR)/.demo-complete)" = "$$($(PY) -c 'from demo.__main__ import TASKS; print(",".join(TASKS))')" ]; then \
	  echo "Reusing the demo runs in $(LOGDIR) (delete it to train again)"; \
	else \
	  $(PY) -m demo --logdir $(LOGDIR) --fresh $(if $(EPOCHS),--epochs $(EPOCHS)); \
	fi
	@echo
	@echo "    Open the LSTM States tab:  http://127.0.0.1:$(PORT)/#lstm_states"
	@echo "    (Ctrl+C stops TensorBoard; PORT=6007 make demo uses another port)"
	@echo
	$(VENV)/bin/tensorboard --logdir $(LOGDIR) --host 127.0.0.1 --port $(PORT)

clean:
	rm -rf $(VENV) frontend/node_modules build dist *.egg-info
