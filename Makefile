# attnbench: `make bench` sets everything up and runs the default sweep; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.attnbench-installed
# Where $(PYTHON) has no torch that sees a GPU, set-up installs torch==$(TORCH_VERSION) into a
# fresh venv from the configured package indexes; where those offer the CUDA build (PyPI's Linux
# wheel is one), `make TORCH_INDEX=<url of a CPU wheel index>` takes the CPU build from there.
# Set-up prints which build it got.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
# Where $(PYTHON) imports a CUDA torch that sees a GPU, the venv reuses it (system packages
# visible) and installs nothing it already has.
HAS_CUDA_TORCH := $(PYTHON) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"
SAY_TORCH := $(BIN)/python -c "import torch; print('attnbench: torch', torch.__version__, \
	'(CUDA %s build)' % torch.version.cuda if torch.version.cuda else '(CPU build)', \
	'from', torch.__file__.rsplit('/', 2)[0])"

# After pytest: its exit 5 (no test collected, so nothing was checked) said in words.
NO_TESTS = || { rc=$$?; [ $$rc -ne 5 ] \
	|| echo "attnbench: pytest collected no tests: nothing was checked" >&2; exit $$rc; }

.PHONY: bench test test-fast check lint clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	@if $(HAS_CUDA_TORCH) 2>/dev/null; then \
		echo "attnbench: $(PYTHON) has a torch that sees a GPU: the venv reuses it"; \
		$(PYTHON) -m venv --system-site-packages $(VENV); \
		$(BIN)/pip install -q --no-build-isolation -e '.[dev,ray]' \
		|| { echo "attnbench: could not install the dev tools; installing attnbench alone"; \
		     $(BIN)/pip install -q --no-build-isolation --no-deps -e .; }; \
	else \
		echo "attnbench: $(PYTHON) has no torch that sees a GPU: installing torch" \
			"$(TORCH_VERSION) into a new venv"; \
		if command -v nvidia-smi >/dev/null; then echo "attnbench: (a GPU is present: to use it," \
			"install a CUDA torch for $(PYTHON), or pass PYTHON=, then make clean setup)"; fi; \
		$(PYTHON) -m venv $(VENV); \
		idx=""; [ -z "$(TORCH_INDEX)" ] || idx="--extra-index-url $(TORCH_INDEX)"; \
		$(BIN)/pip install -q 'torch==$(TORCH_VERSION)' $$idx -e '.[numba,dev,ray]'; \
	fi
	@$(SAY_TORCH)
	@touch $(STAMP)

bench: $(STAMP)
	@out=results/bench-$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/attnbench run -s default --out $$out && \
	$(BIN)/attnbench report $$out

check: $(STAMP)
	$(BIN)/attnbench check -s smoke

# tests/conftest.py turns entry-point plugins off for the tests; `process` marks the tests that
# start processes (the CLI, workers, torch.compile's compile workers).
test: $(STAMP)
	$(BIN)/python -m pytest -q $(NO_TESTS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not process" $(NO_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check attnbench backends tests benchmarks examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
