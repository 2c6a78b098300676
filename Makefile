# attnbench: `make bench` sets everything up and runs the default sweep; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.attnbench-installed
# Set-up (tools/setup_venv.py, run by $(PYTHON)): where $(PYTHON) has a torch that sees a GPU,
# or torch $(TORCH_VERSION) itself, the venv reuses every package $(PYTHON) sees (a .pth adds its
# site directories, also where $(PYTHON) is itself a virtualenv) and installs attnbench alone,
# asking no package index when everything needed is there. Otherwise it installs
# torch==$(TORCH_VERSION) and the extras into a fresh venv from the configured package indexes;
# where those offer the CUDA build (PyPI's Linux wheel is one), `make TORCH_INDEX=<url of a CPU
# wheel index>` takes the CPU build from there. Set-up prints which torch it got.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
SAY_TORCH := $(BIN)/python -c "import torch; print('attnbench: torch', torch.__version__, \
	'(CUDA %s build)' % torch.version.cuda if torch.version.cuda else '(CPU build)', \
	'from', torch.__file__.rsplit('/', 2)[0])"

# After pytest: its exit 5 (no test collected, so nothing was checked) said in words.
NO_TESTS = || { rc=$$?; [ $$rc -ne 5 ] \
	|| echo "attnbench: pytest collected no tests: nothing was checked" >&2; exit $$rc; }

.PHONY: bench test test-fast check lint clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) tools/setup_venv.py --venv $(VENV) --torch $(TORCH_VERSION) \
		--torch-index "$(TORCH_INDEX)"
	@$(SAY_TORCH)
	@touch $(STAMP)

# BENCH_OUT: where the run goes (default results/bench-<time>); BENCH_ARGS: more `run` flags
bench: $(STAMP)
	@out=$(or $(BENCH_OUT),results/bench-$$(date +%Y%m%d-%H%M%S)); \
	$(BIN)/attnbench run -s default $(BENCH_ARGS) --out $$out && \
	$(BIN)/attnbench report $$out

check: $(STAMP)
	$(BIN)/attnbench check -s smoke

# tests/conftest.py turns entry-point plugins off for the tests; `process` marks the tests that
# start processes (the CLI, workers, torch.compile's compile workers). Most run side by side in
# TEST_JOBS pytest-xdist workers (a test file stays in one worker, so its fixtures are made
# once); those marked `alone` (they judge the machine's load or its speed, run steps against
# time caps, or start a Ray cluster) run after them, one at a time.
# The tests start about 1,000 Python processes: each reads attnbench's modules from a bytecode
# cache in the venv instead of compiling them again (about 0.1 s of CPU a process), also where
# PYTHONDONTWRITEBYTECODE is set; the source tree gets no __pycache__.
TEST_JOBS ?= 4
TEST_ENV := env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(abspath $(VENV))/pycache
test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder -m "not alone" --durations=10 \
		$(NO_TESTS)
	$(TEST_ENV) $(BIN)/python -m pytest -q -m alone --durations=5 $(NO_TESTS)

test-fast: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -q -m "not process" $(NO_TESTS)

# ruff, the layers of docs/architecture.md (import-linter's contract in pyproject.toml) and
# mypy, strict on the record, the result files, verify/ and plugin/ (pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check attnbench backends tests benchmarks examples tools
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
