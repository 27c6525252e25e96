# ustcp: set-up, daemon and tests. `sudo make run` and `sudo make test` work on a fresh
# Debian machine with Python 3.11: they create .venv and install what is missing.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
NETNS ?= ustcp
ARGS ?=
# package:command pairs; a package is installed only when its command is missing
SYSDEPS := iputils-ping:ping netcat-openbsd:nc tcpdump:tcpdump iproute2:ip curl:curl ethtool:ethtool \
           nftables:nft chromium:chromium

.PHONY: venv sysdeps run demo test lint clean distclean

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
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "sysdeps: missing$$missing (run as root to install them)" >&2; exit 0; \
	fi; \
	echo "sysdeps: installing$$missing"; \
	apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing

run: venv sysdeps
	tools/run-in-netns.sh $(NETNS) $(VENV)/bin/ustcp serve $(ARGS)

# A guided demo in a namespace of its own: `sudo make demo TOPIC=syn-flood` (no TOPIC lists them)
TOPIC ?=
demo: venv sysdeps
	$(VENV)/bin/ustcp demo $(TOPIC)

test: venv sysdeps
	$(VENV)/bin/ruff check ustcp tools tests
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

lint: venv
	$(VENV)/bin/ruff check ustcp tools tests
	$(VENV)/bin/mypy

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
