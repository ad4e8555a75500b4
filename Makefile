# Two commands for a fresh clone: `make demo` runs a try-on through the whole platform, `make test` passes the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install proto weights demo test test-reliability lint clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP) proto

proto: $(STAMP)
	$(BIN)/python -m vton.protogen

weights: install
	$(BIN)/vton weights pull blazepose-litert

demo: install weights
	$(BIN)/python -m vton_cli.demo --out out/demo

test: install weights
	bash tools/install_deploy_tools.sh
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# Faults injected into a running platform (kill -9, 20-60 s outages, SIGTERM under load), 100 concurrent jobs,
# and the long tier of hostile input (heavy bombs, every gRPC image field, schemathesis): 12 minutes on 2 quiet
# cores, 30 on busy ones. Figures in out/reliability/ and the test output (docs/reliability.md).
test-reliability: install weights
	$(BIN)/python -m pytest -q -s -m reliability tests/reliability

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) vton/v1 out
