# The two commands of the README:
#   make run   creates the project's virtual environment (.venv/), installs what the dashboard
#              needs into it and serves it (demo clinic on first start)
#   make test  installs what the tests need (Python packages into .venv/, Debian's Chromium) and
#              runs lint and every test, browser tests included; it fails, never skips, without
#              a browser
# Everything Python goes into .venv/, made with the interpreter given (PYTHON=, default python3):
# a system Python that refuses `pip install` (PEP 668, "externally-managed-environment", as
# Debian 12 and Ubuntu 24.04 ship it) works. Creating the venv needs Debian's python3-venv; when
# it is missing it is installed with apt-get (as root, or through sudo), like Chromium below.
PYTHON ?= python3
PORT ?= 8501
VENV ?= .venv
VPY := $(VENV)/bin/python

.PHONY: run test install install-dev chromium lint venv check-faults clean-venv

$(VPY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "ERROR: $(PYTHON) is not Python 3.11 or later (give another one with PYTHON=...)" >&2; \
	  exit 1; }
	@$(PYTHON) -m venv $(VENV) >/dev/null 2>&1 || { \
	  rm -rf $(VENV); \
	  echo "Installing Debian's python3-venv (needed to create $(VENV))..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-venv >/dev/null; \
	  $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	    echo "ERROR: could not create $(VENV) with $(PYTHON): install python3-venv" \
	      "(apt-get install -y python3-venv) and run make again" >&2; exit 1; }; }
	@echo "Created $(VENV) with $$($(VPY) --version)"

venv: $(VPY)

$(VENV)/.installed: requirements.txt | $(VPY)
	$(VPY) -m pip install -q -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VPY)
	$(VPY) -m pip install -q -r requirements-dev.txt
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for browser tests and chart export..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { echo "ERROR: chromium is not installed and could not be installed" >&2; exit 1; }

run: install chromium
	$(VPY) -m streamlit run dashboard.py --server.port $(PORT) --browser.gatherUsageStats false

lint: install-dev
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .

test: install-dev chromium lint
	$(VPY) -m pytest -q

# Each fault a clinic is likely to meet (damaged database, bad settings, full disk, ...) and the
# sentence it gives, as a table (not part of `make test`: it builds its own small clinics)
check-faults: install
	$(VPY) -m alliance check-faults

clean-venv:
	rm -rf $(VENV)
