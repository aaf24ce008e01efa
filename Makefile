# microswarm: every target sets up what it needs. `make test` and `make demo` work on a
# fresh clone with only the package registries reachable.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers: 0 runs the suite in one process (the default: on a loaded machine
# two workers make its timing tests fail now and then); PYTEST_WORKERS=2 uses both cores
PYTEST_WORKERS ?= 0

.PHONY: all venv test demo lint vectors native native-x64 clean distclean

all: test

# The virtual environment is reused while pyproject.toml is unchanged.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The x64 native module is built first, as `make demo` does: with two workers no test sees
# it appear in its middle (a cold clone's first build)
test: $(STAMP)
	$(BIN)/ruff check host protocol tools tests
	-$(BIN)/python tools/build_native.py --arch x64
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# The VM boards load the x64 native module when it builds; without a C compiler they run
# the pure-Python kernels and the demo says so in its table.
demo: $(STAMP)
	-$(BIN)/python tools/build_native.py --arch x64
	$(BIN)/microswarm demo

lint: $(STAMP)
	$(BIN)/ruff check host protocol tools tests

vectors: $(STAMP)
	$(BIN)/python tools/gen_protocol.py

native: $(STAMP)
	$(BIN)/python tools/build_native.py --all

native-x64: $(STAMP)
	$(BIN)/python tools/build_native.py --arch x64

clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis out firmware/native/build

distclean: clean
	rm -rf $(VENV) .cache
