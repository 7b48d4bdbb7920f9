# The two commands: `make run` (demo: generate, index, search, classify) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0

.PHONY: run test test-fast lint bench browser-deps clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,ray]'
	touch $@

run: $(VENV)/.installed
	$(PY) -m search.cli demo --dir demo

# Debian's chromium (and a CJK font for readable screenshots) for the web-page tests; skipped where apt is not ours.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-zenhei >/dev/null) || \
	  echo "note: chromium not installed; browser tests will be skipped"; }

# Lint before the tests: ruff's rules, ruff format and mypy (LINT_FORMAT=0 skips the format and import-order checks).
LINT_FORMAT ?= 1
lint: $(VENV)/.installed
	$(PY) -m ruff check $(if $(filter 1,$(LINT_FORMAT)),,--extend-ignore I001) .
	$(if $(filter 1,$(LINT_FORMAT)),$(PY) -m ruff format --check .,@echo "ruff format: not checked (LINT_FORMAT=0)")
	$(PY) -m mypy indexer search plugins

# Two pytest workers: most tests wait on subprocesses, servers and disks, so two overlap well on two cores.
# loadgroup: tests marked xdist_group (the Ray cluster tests) share one worker and so one local cluster.
PYTEST_WORKERS ?= 2
test: lint browser-deps
	$(PY) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadgroup

# The unit tier: no browser, nothing marked slow (under 2 minutes on two cores).
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) -m "not slow and not browser"

bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py

clean:
	rm -rf demo .pytest_cache
