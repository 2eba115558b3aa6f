# Two commands on a fresh machine: `make run` and `make test`.
# torch is installed FIRST from its pinned CPU build, so nothing later resolves a CUDA build.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.smolforge-installed

.PHONY: run test lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@if $(BIN)/python -m pip list 2>/dev/null | grep -i nvidia; then \
		echo "error: a CUDA package was installed; torch must stay the 2.13.0 CPU build" >&2; exit 1; fi
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/smolforge run --preset tiny --yes

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
