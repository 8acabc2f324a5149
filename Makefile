# ClientDesk: `make run` serves the app with demo data, `make test` runs the suite, `make check` lints.
VENV ?= .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask
PYTHON ?= python3
export FLASK_APP := run:app
export PYTHONPATH := $(CURDIR)
HOST ?= 127.0.0.1
PORT ?= 5000
PYTEST_ARGS ?=

.PHONY: install install-dev run serve test test-unit test-integration test-browser check lint drift catalogs \
        translations extract-translations migrate db-upgrade clean

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

translations: $(VENV)/.runtime
	$(VENV)/bin/pybabel -q compile -d translations -D messages

db-upgrade: $(VENV)/.runtime
	mkdir -p instance
	$(FLASK) db upgrade heads

run: install translations db-upgrade
	$(FLASK) clientdesk setup
	@echo "ClientDesk is serving on http://$(HOST):$(PORT)/"
	$(VENV)/bin/gunicorn --workers 2 --worker-class sync --bind $(HOST):$(PORT) --access-logfile - run:app

serve: install translations
	$(VENV)/bin/gunicorn --workers 2 --worker-class sync --bind $(HOST):$(PORT) run:app

test: install-dev translations
	bash scripts/ensure-browser.sh
	$(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS) tests

test-unit: install-dev translations
	$(PY) -m pytest -q tests/unit

test-integration: install-dev translations
	$(PY) -m pytest -q -n 2 --dist loadfile tests/integration

test-browser: install-dev translations
	bash scripts/ensure-browser.sh
	$(PY) -m pytest -q tests/browser

lint: install-dev
	$(VENV)/bin/ruff check app tests scripts bench config.py run.py

drift: install-dev
	$(PY) scripts/check_migrations.py

catalogs: install-dev
	$(PY) scripts/check_catalogs.py

check: lint drift catalogs

extract-translations: install-dev
	$(VENV)/bin/pybabel -q extract -F babel.cfg -k lazy_gettext -k _l -k gettext -k _ -o translations/messages.pot app
	$(VENV)/bin/pybabel -q update -N -i translations/messages.pot -d translations -D messages

migrate: install-dev
	$(FLASK) db migrate -m "$(m)"

clean:
	rm -rf $(VENV) .pytest_cache instance/clientdesk.db
