# keytrail developer entry points. Every target is idempotent.
#
#   make setup   venv + editable install with dev extras + compiled parser fast paths
#                (parsers/native, needs cargo) + test-server artifacts
#                (.cache/servers: OpenSearch runner, Flink wheels, Beam Flink job server,
#                SeaweedFS, Elasticsearch test node). No apt: see `make system`.
#   make system  Debian packages (Chromium, JDK 17, Maven, ...) if missing; needs root
#   make test    system + setup, then the whole pytest suite (starts its own servers)
#   make run     keytrail run on sample_logs/ (in-process Beam runner)
#   make bench   benchmark tables (never fail a build)
#   make lint    ruff + mypy --strict
#   make lock    rewrite requirements.lock from the venv (after changing dependencies)
#   make audit   pip-audit over requirements.lock (online, else the local advisory snapshot)
#   make fuzz    every fuzz target for FUZZ_SECONDS each (CI runs a short budget in pytest)
#   make soak    long randomized live-mode acceptance run: random feeds, kill -9, rotations
#                (SOAK_FEEDS, SOAK_STEPS); prints one row per feed, fails on any difference;
#                SOAK_OPENSEARCH=http://127.0.0.1:PORT adds engine outages and compares documents

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
PYTEST_ARGS ?=
ARTIFACTS ?= test-artifacts
FUZZ_SECONDS ?= 600
FUZZ_DIR ?= .cache/fuzz

SOAK_FEEDS ?= 20
SOAK_STEPS ?= 80

.PHONY: setup venv native servers system test run bench lint soak clean-servers lock audit fuzz

setup: venv native servers

venv: $(VENV)/.keytrail-installed

# Reinstalls when pyproject.toml or the lock changes; the stamp is inside the venv.
# requirements.lock pins every locked package (constraints), so CI installs exactly it.
$(VENV)/.keytrail-installed: pyproject.toml requirements.lock
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q -c requirements.lock pip
	$(VPY) -m pip install -q -c requirements.lock -e '.[dev]'
	@touch $@

# Compiled parser fast paths (Rust/PyO3). The Python parsers work without them, slower.
# Outside CI a failed build (no cargo, no crates.io) is a warning: keytrail then runs on the
# Python parsers with identical results. Under CI=true it fails the build.
native: venv
	@PYTHON=$(abspath $(VPY)) bash .ci/build-native.sh || { \
	  echo "make native: build failed; keytrail will use the pure-Python parsers (identical results, slower)" >&2; \
	  test "$$CI" != true; }

servers: venv
	PYTHON=$(abspath $(VPY)) bash .ci/setup-servers.sh

system:
	bash .ci/install-system.sh

test: system setup
	@mkdir -p $(ARTIFACTS)
	$(VPY) -m pytest -q -ra --durations=25 --timeout=1800 \
	    --junitxml=$(ARTIFACTS)/junit.xml $(PYTEST_ARGS)

run: venv native
	$(VENV)/bin/keytrail run

bench: venv native
	$(VPY) bench/parse_throughput.py
	$(VPY) bench/run_throughput.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

lock: venv
	$(VPY) .ci/lock.py

audit: venv
	$(VPY) .ci/audit.py

fuzz: venv native
	@rc=0; for t in detect_and_parse each_parser lines native_helpers; do \
	  echo "fuzz: $$t ($(FUZZ_SECONDS)s)"; \
	  $(VPY) -m tests.fuzz.run_atheris $$t --seconds $(FUZZ_SECONDS) --workdir $(FUZZ_DIR) \
	    || { rc=1; echo "fuzz: $$t found a problem: see $(FUZZ_DIR)/crash-*"; }; \
	done; exit $$rc

soak: venv native
	PYTHONPATH=$(CURDIR) $(VPY) -m tests.live_feed --feeds $(SOAK_FEEDS) --steps $(SOAK_STEPS) \
	    $(if $(SOAK_OPENSEARCH),--opensearch $(SOAK_OPENSEARCH))

clean-servers:
	rm -rf .cache/servers
