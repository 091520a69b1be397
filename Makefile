# tick2trade: every target sets up its own virtual environment from PyPI first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out
BOARD ?= ulx3s-85f
PYTEST_FLAGS ?= -n 2 --dist loadgroup
export AMARANTH_USE_YOSYS := builtin

.PHONY: setup demo test test-all test-board bench verilog synth build waves clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "tick2trade needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: setup
	$(BIN)/tick2trade demo --out $(OUT)/demo

test: setup
	$(BIN)/python -m pytest $(PYTEST_FLAGS) -m "not slow"

test-all: setup
	$(BIN)/python -m pytest $(PYTEST_FLAGS)

# The board tests on a flashed board: make test-board DEVICE=serial:/dev/ttyUSB1
test-board: setup
	@test -n "$(DEVICE)" || { echo "make test-board needs DEVICE=serial:PORT, e.g. DEVICE=serial:/dev/ttyUSB1"; exit 2; }
	$(BIN)/python -m pytest -m board --board $(DEVICE)

bench: setup
	$(BIN)/tick2trade bench --out $(OUT)/bench.json

verilog: setup
	$(BIN)/tick2trade verilog --out $(OUT)/verilog

synth: setup
	$(BIN)/python -m tick2trade.host.synth --top pipeline --per-module --out $(OUT)/synth

build: setup
	$(BIN)/tick2trade build --board $(BOARD) --out $(OUT)/build/$(BOARD)

waves: setup
	WAVES=1 $(BIN)/tick2trade sim rx $(OUT)/demo/feed.pcap --out $(OUT)/waves/hw.jsonl

clean:
	rm -rf $(OUT) sim_build .pytest_cache
