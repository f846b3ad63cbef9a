# One command each: `make run` sets up and counts the bundled sample; `make test` sets up and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint test-fast chaos soak bench evaluate clean

# pip compiles what it installs, but not an editable install's own modules: where
# PYTHONDONTWRITEBYTECODE is set, every process would compile them again (~0.1 s each).
setup: $(VENV)/.installed
	@$(BIN)/python -m compileall -q pipeline

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: setup
	$(BIN)/wordpipe run samples/sample.txt

test: setup lint
	$(BIN)/python -m pytest

lint: setup  # the gate: lint, format and types, before any test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test-fast: setup  # no broker: the pure core only
	$(BIN)/python -m pytest tests/unit

chaos: setup  # the long chaos suite (~17 min on 2 cores): 50+ MB per scenario; writes docs/reliability.md
	WORDPIPE_CHAOS=long WORDPIPE_CHAOS_REPORT=docs/reliability.md $(BIN)/python -m pytest tests/chaos

soak: setup  # the long soaks (~20 min each on 2 cores; not in `make test`): write docs/soak/ and docs/soak-source/
	status=0; \
	$(BIN)/python bench/soak.py --mb 2000 --rate 2 --state-dir --set windows_kept=4 --out docs/soak || status=1; \
	$(BIN)/python bench/soak.py --source --minutes 20 --rate 2 --set windows_kept=4 --out docs/soak-source || status=1; \
	exit $$status

bench: setup
	$(BIN)/python bench/e2e_throughput.py

evaluate: setup  # the whole evaluation (~35 min on 2 cores): writes docs/evaluation.md and docs/evaluation/
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/evaluate.py

clean:
	rm -rf $(VENV) bench/out .pytest_cache .hypothesis
