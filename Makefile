# Every target creates .venv itself when missing.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PYTHONUNBUFFERED := 1

.PHONY: help venv test drill serve site bench fuzz lint browser postgresql cluster-demo clean

help:
	@echo "make drill   run every drill once through the nightly flow, write evidence, build the site"
	@echo "make test    set up everything and run the test suite"
	@echo "make serve   local Prefect server + the served nightly deployment (SITE_PORT=8000 serves the site)"
	@echo "make cluster-demo  PostgreSQL + Prefect server + two netns drill hosts, one run each (root)"
	@echo "make site    rebuild the evidence site from pilot_artifacts/"
	@echo "make bench   run every benchmark and print the figures"
	@echo "make fuzz    schemathesis against a live supervisor (2,000+ requests)"
	@echo "make lint    ruff check + format check + mypy --strict over supervisor/ and flows/"

$(VENV_STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[pipeline,dev]'
	@touch $(VENV_STAMP)

venv: $(VENV_STAMP)

# Debian's chromium for the browser test; playwright cannot download a browser here.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			(apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) \
			|| echo "warning: could not install chromium; browser tests will be skipped"; \
		else echo "warning: /usr/bin/chromium missing and not root; browser tests will be skipped"; fi; \
	fi

# Debian's PostgreSQL for the cluster demo and its test (the server binaries only are used).
postgresql:
	@if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then \
			(apt-get install -y -q postgresql >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null)) \
			|| echo "warning: could not install postgresql; cluster tests will be skipped"; \
		else echo "warning: PostgreSQL missing and not root; cluster tests will be skipped"; fi; \
	fi

test: venv browser postgresql
	$(PY) -m pytest -q -ra

lint: venv
	$(PY) -m ruff check supervisor flows tests benchmarks
	$(PY) -m ruff format --check supervisor flows tests benchmarks
	$(PY) -m mypy

drill: venv
	$(PY) -m flows nightly

# SITE_PORT=8000 also serves the built site on 127.0.0.1:8000; NOTIFY_URL=... gets the alerts
serve: venv
	$(PY) -m flows serve --with-server $(if $(SITE_PORT),--site-port $(SITE_PORT)) $(if $(NOTIFY_URL),--notify-url $(NOTIFY_URL))

cluster-demo: venv postgresql
	$(PY) -m flows.cluster --source $(CURDIR)

site: venv
	$(PY) -m flows publish

bench: venv
	$(PY) benchmarks/run_all.py

# FUZZ_EXAMPLES: generated requests to aim for (make test runs the bounded default, 350)
fuzz: venv
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-2000} $(PY) -m pytest -q tests/test_fuzz_api.py

clean:
	rm -rf site .pytest_cache .ruff_cache
