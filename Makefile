# Two commands on a fresh machine: `make run` and `make test`.
# torch is installed FIRST from its pinned CPU build, so nothing later resolves a CUDA build.
# `make run` needs only the base install. The GGUF export builds llama.cpp from llama-cpp-python's source
# distribution (cmake and g++, about 7 minutes on 2 cores), once, in `make gguf`, which `make test` runs; the
# toolchain step extracts llama.cpp's converter from the same sdist.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.smolforge-installed
GGUF_STAMP := $(VENV)/.smolforge-gguf-installed
# SkyPilot in a virtualenv of its own: the tests load `smolforge skypilot`'s task files with SkyPilot's own
# loader (sky.Task.from_yaml), and skypilot 0.14 pins click<8.2, which huggingface_hub 2.4 does not accept.
SKY_VENV := .venv-sky
SKY_STAMP := $(SKY_VENV)/.skypilot-installed

.PHONY: run test test-all test-extra test-fast lint install gguf clean browser-deps sky

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,demo,qlora]"
	@if $(BIN)/python -m pip list 2>/dev/null | grep -i nvidia; then \
		echo "error: a CUDA package was installed; torch must stay the 2.13.0 CPU build" >&2; exit 1; fi
	touch $(STAMP)

# llama.cpp for `quantize: [gguf-*]` (GGUF files for llama.cpp, Ollama, LM Studio): built once, on first need.
gguf: $(GGUF_STAMP)

$(GGUF_STAMP): $(STAMP)
	@command -v g++ >/dev/null && command -v cmake >/dev/null || \
		{ SUDO=$$(test "$$(id -u)" -eq 0 || echo sudo); \
		  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq g++ cmake; }
	@echo "Building llama.cpp for the GGUF export: once, about 7 minutes on 2 cores..."
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(BIN)/python -m pip install --quiet -e ".[dev,demo,gguf,qlora]"
	$(BIN)/python -m smolforge.gguf.toolchain install
	@if $(BIN)/python -m pip list 2>/dev/null | grep -i nvidia; then \
		echo "error: a CUDA package was installed; torch must stay the 2.13.0 CPU build" >&2; exit 1; fi
	touch $(GGUF_STAMP)

sky: $(SKY_STAMP)

$(SKY_STAMP):
	test -x $(SKY_VENV)/bin/python || $(PYTHON) -m venv $(SKY_VENV)
	$(SKY_VENV)/bin/python -m pip install --quiet skypilot==0.14.1
	touch $(SKY_STAMP)

run: $(STAMP)
	$(BIN)/smolforge run --preset tiny --yes

# Everything but the multi-process lane (one two-process DDP test stays in), the transformers-floor check (a
# fresh environment per release) and three more plan-accuracy configurations: see README, Tests.
test: $(GGUF_STAMP) $(SKY_STAMP) browser-deps
	$(BIN)/python -m pytest -m "not multiproc and not floor and not accuracy"

# What `make test` leaves out: the multi-process lane (torchrun, FSDP, two nodes on this machine), the
# transformers-floor check, the calibrated and the padded plan-accuracy runs; `make test-all` runs everything in one go.
test-extra: $(GGUF_STAMP)
	$(BIN)/python -m pytest -m "multiproc or floor or accuracy"

test-all: $(GGUF_STAMP) $(SKY_STAMP) browser-deps
	$(BIN)/python -m pytest

# Everyday lane: everything that does not train a model (one to two minutes on 2 cores).
test-fast: $(STAMP) $(SKY_STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

# Debian packages the tests use (CI runs as root): headless Chromium + its WebDriver for the demo app's
# browser test; Go, whose text/template renders the Ollama Modelfile template as Ollama does.
browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v go >/dev/null || \
		{ SUDO=$$(test "$$(id -u)" -eq 0 || echo sudo); \
		  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
		  chromium chromium-driver golang-go; }

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(SKY_VENV) runs .pytest_cache
