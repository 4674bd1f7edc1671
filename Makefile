# Two entry points: `make demo` (install, then prepare + audit the bundled example) and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q
PYTEST_ARGS ?=

.PHONY: demo test lint schemas bench

$(VENV)/.base: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e .
	touch $@

# torch 2.13.0 first: a CPU build of it lies on the CI machines; elsewhere pip picks the user's own build.
$(VENV)/.full: $(VENV)/.base
	$(PIP) torch==2.13.0 || $(PIP) "torch>=2.4"
	$(PIP) -e ".[train,dev,ray]"
	touch $@

demo: $(VENV)/.base
	$(VENV)/bin/sftdata demo

# pytest exits 5 when it collected nothing; that is not a failure of the code under test.
test: $(VENV)/.full
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

lint: $(VENV)/.full
	$(VENV)/bin/ruff check sftdata tests benchmarks

schemas: $(VENV)/.base
	$(VENV)/bin/sftdata schemas --out schemas
