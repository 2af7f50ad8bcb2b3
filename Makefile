# The two commands of the README:
#   make run   installs what the dashboard needs and serves it (demo clinic on first start)
#   make test  installs what the tests need (Python packages and Debian's Chromium) and runs
#              lint and every test, browser tests included; it fails, never skips, without a browser
PYTHON ?= python3
PORT ?= 8501

.PHONY: run test install install-dev chromium lint

install:
	$(PYTHON) -m pip install -q -r requirements.txt

install-dev:
	$(PYTHON) -m pip install -q -r requirements-dev.txt

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for browser tests and chart export..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { echo "ERROR: chromium is not installed and could not be installed" >&2; exit 1; }

run: install chromium
	$(PYTHON) -m streamlit run dashboard.py --server.port $(PORT) --browser.gatherUsageStats false

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

test: install-dev chromium lint
	$(PYTHON) -m pytest -q
