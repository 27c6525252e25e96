# ustcp: set-up, daemon and tests. `sudo make run` and `sudo make test` work on a fresh
# Debian machine with Python 3.11: they create .venv and install what is missing.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
NETNS ?= ustcp
ARGS ?=
# package:command pairs; a package is installed only when its command is missing
SYSDEPS := gcc:gcc iputils-ping:ping netcat-openbsd:nc tcpdump:tcpdump iproute2:ip curl:curl ethtool:ethtool \
           nftables:nft chromium:chromium

# mypyc compiles the engine with gcc against the interpreter's headers (Python.h)
PYTHON_HEADERS := $(PYTHON) -c 'import os, sys, sysconfig; \
  sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
# The suite runs on the compiled engine; this part of it runs again on pure Python
PURE_TESTS ?= tests/unit tests/engine tests/conformance

.PHONY: venv sysdeps compiled run demo test bench flake lint clean distclean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

sysdeps:
	@missing=""; \
	for pair in $(SYSDEPS); do \
	  command -v "$${pair#*:}" >/dev/null 2>&1 || missing="$$missing $${pair%%:*}"; \
	done; \
	$(PYTHON_HEADERS) || missing="$$missing python3-dev"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "sysdeps: missing$$missing (run as root to install them)" >&2; exit 0; \
	fi; \
	echo "sysdeps: installing$$missing"; \
	apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing

# The engine compiled with mypyc into build/mypyc/ (ustcp/compiled.py): rebuilt when a
# compiled source changed, a no-op otherwise. USTCP_ENGINE=pure|compiled picks one at run time.
compiled: venv sysdeps
	$(VENV)/bin/python tools/build_engine.py

run: venv sysdeps compiled
	tools/run-in-netns.sh $(NETNS) $(VENV)/bin/ustcp serve $(ARGS)

# A guided demo in a namespace of its own: `sudo make demo TOPIC=syn-flood` (no TOPIC lists them)
TOPIC ?=
demo: venv sysdeps
	$(VENV)/bin/ustcp demo $(TOPIC)

# The pure-Python pass runs beside the compiled one (a core each: it is done about when the
# compiled pass reaches tests/kernel, which it leaves a core) and prints after it.
test: venv sysdeps compiled
	$(VENV)/bin/ruff check ustcp tools tests setup.py
	$(VENV)/bin/mypy
	mkdir -p build; \
	USTCP_ENGINE=pure $(VENV)/bin/pytest -q -p no:cacheprovider $(PURE_TESTS) \
	  > build/pure-tests.log 2>&1 & pure=$$!; \
	USTCP_ENGINE=compiled $(VENV)/bin/pytest -q --durations=15; compiled=$$?; \
	wait $$pure; pure_rc=$$?; \
	echo "USTCP_ENGINE=pure pytest -q $(PURE_TESTS):"; cat build/pure-tests.log; \
	exit $$(( compiled || pure_rc ))

# docs/performance.md's table: ustcp (compiled, busy polling, pure Python) against the kernel's
# TCP and a raw TUN ceiling, in namespaces of its own: `sudo make bench` (~10 min; ARGS="--quick")
bench: venv sysdeps compiled
	test -x $(VENV)/bin/py-spy || $(VENV)/bin/pip install -q -e '.[bench]'
	$(VENV)/bin/python tools/bench.py --busy-poll 50 --workers 2 --repeat 3 $(ARGS)

# The chosen tests N times, each run in a fresh pytest process; every failure reported:
# `sudo make flake TESTS=tests/kernel N=20`
TESTS ?= tests/kernel
N ?= 20
flake: venv sysdeps
	$(VENV)/bin/python tools/flake.py -n $(N) $(TESTS)

lint: venv
	$(VENV)/bin/ruff check ustcp tools tests setup.py
	$(VENV)/bin/mypy

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
