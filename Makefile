# coreselect: the README's two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
# The CPU build of PyTorch (on disk on our machines); an unpinned torch pulls a CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: venv install install-dev demo test test-all mutation bench bench-quick lint docs dist clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel >/dev/null 2>&1 || true

venv: $(PY)

install: $(PY)
	$(PIP) -e .

install-dev: $(PY)
	$(PIP) "$(TORCH)"
	$(PIP) -e ".[all]"

# Debian packages with real data: Fashion-MNIST (the demo, tutorials) and fortunes (the text
# tutorial). Only where apt is there and we are root; otherwise the demo uses scikit-learn's
# digits and the tests that need them skip.
data:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    missing=""; \
	    [ -d /usr/share/datasets/fashion-mnist ] || missing="$$missing dataset-fashion-mnist"; \
	    [ -e /usr/share/games/fortunes/fortunes ] || missing="$$missing fortunes"; \
	    if [ -n "$$missing" ]; then \
	        (apt-get install -y -qq $$missing >/dev/null 2>&1 || \
	         (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $$missing >/dev/null 2>&1)) \
	        || echo "could not install$$missing; the demo uses scikit-learn's digits instead"; \
	    fi; \
	fi

demo: install data
	$(PIP) "$(TORCH)" && $(PIP) -e ".[torch,plot]"
	$(PY) experiments/demo.py

test: install-dev data
	$(PY) -m pytest -q

test-all: install-dev data
	$(PY) -m pytest -q -m "" --hypothesis-profile=thorough

# Mutation testing ([tool.mutmut] in pyproject.toml): mutants of selection.py, sensitivity.py
# and surrogates.py against their fast tests (not the heavy many-fit ones), one worker, in
# ./mutants (never src/). Prints the
# survivors and killed/total per file, and fails under 90%. Equivalent survivors are explained
# in tests/test_mutation_*.py. Cached: a rerun tests only what changed (rm -rf mutants: all).
mutation: install-dev
	env -u PYTHONPATH OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BIN)/mutmut run --max-children 1
	@$(BIN)/mutmut results
	@$(BIN)/mutmut results --all true | awk -F': ' '{ split($$1, a, "."); f = a[2] ".py"; \
	    if ($$2 != "not checked") { t[f]++; if ($$2 == "killed") k[f]++ } } \
	    END { bad = 0; for (f in t) { printf "%s: %d/%d killed (%.1f%%)\n", f, k[f], t[f], \
	    100 * k[f] / t[f]; if (k[f] < 0.9 * t[f]) bad = 1 }; exit bad }'

bench: install-dev
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/run_all.py

bench-quick: install-dev
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/run_all.py --quick

docs: install-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# A wheel in dist/ (coreselect is not on PyPI): pip install dist/coreselect-*.whl elsewhere.
dist: $(PY)
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
	    --wheel-dir dist .
	@ls dist/*.whl

lint: install-dev
	$(BIN)/ruff check src tests benchmarks experiments

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache mutants .hypothesis
