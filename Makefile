# Two commands matter: `make run` (serve on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/imgress serve --host 127.0.0.1 --port 8080 --data-dir ./data

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q -ra

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/process.py

clean:
	rm -rf $(VENV) data .pytest_cache
