# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when missing and install
# exactly the versions in requirements.lock (every package, torch included, for CPython 3.11 on x86_64
# Linux), so what the tests see does not change when a dependency releases. `make lock` regenerates
# the lock from pyproject.toml's ranges; `make test-latest` runs the suite on the newest releases
# those ranges allow, to see a break coming before users do (not part of CI, which stays deterministic).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
# The lock's generator, pinned so that `make lock` gives the same file from the same registry state.
UV_VERSION := 0.13.10
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-latest lock bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $(STAMP)

demo: setup
	$(BIN)/python -m guided.demo --out out/demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# Run after changing a range in pyproject.toml, and to take up new releases on purpose (then `make test`).
lock:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	test -x $(BIN)/uv && $(BIN)/uv --version | grep -q " $(UV_VERSION) " || $(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml --all-extras --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	    --custom-compile-command "make lock" --quiet -o $(LOCK)

test-latest:
	bash .ci/test-latest

bench: setup
	$(BIN)/python bench/bench_gatys.py
	$(BIN)/python bench/bench_guided.py

clean:
	rm -rf out report
