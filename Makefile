# The two commands: `make run` (demo: generate, index, search, classify) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0

.PHONY: run test bench browser-deps clean

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

# Two pytest workers: most tests wait on subprocesses, servers and disks, so two overlap well on two cores.
# loadgroup: tests marked xdist_group (the Ray cluster tests) share one worker and so one local cluster.
PYTEST_WORKERS ?= 2
test: $(VENV)/.installed browser-deps
	$(PY) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadgroup

bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py

clean:
	rm -rf demo .pytest_cache
