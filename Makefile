# attnbench: `make bench` sets everything up and runs the default sweep; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.attnbench-installed
# The CPU build of torch; a CUDA torch already on the system is reused instead (see setup).
TORCH_CPU ?= torch==2.13.0
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache

.PHONY: bench test check lint clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	@if $(PYTHON) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then \
		echo "attnbench: reusing the CUDA torch installed on this system"; \
		$(PYTHON) -m venv --system-site-packages $(VENV); \
		$(BIN)/pip install -q --no-build-isolation -e '.[dev]' \
		|| $(BIN)/pip install -q --no-build-isolation --no-deps -e .; \
	else \
		$(PYTHON) -m venv $(VENV); \
		$(BIN)/pip install -q '$(TORCH_CPU)' -e '.[numba,dev]'; \
	fi
	@touch $(STAMP)

bench: $(STAMP)
	@out=results/bench-$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/attnbench run -s default --out $$out && \
	$(BIN)/attnbench report $$out

check: $(STAMP)
	$(BIN)/attnbench check -s smoke

test: $(STAMP)
	ATTNBENCH_DISABLE_PLUGIN_AUTOLOAD=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check attnbench backends tests benchmarks

clean:
	rm -rf $(VENV) .numba_cache .pytest_cache .ruff_cache build *.egg-info
