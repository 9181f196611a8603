# bs-market — `make run` starts the exchange, `make test` runs every test.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast bench psql db-url lint check i18n clean-db

$(STAMP): requirements.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m webapp.run

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: $(STAMP)
	$(PY) -m bench.ledger

# The DBA's door: psql as the owner on the running database.
psql: $(STAMP)
	@$(PY) -m webapp.devcluster psql

db-url: $(STAMP)
	@if [ -n "$$DATABASE_URL" ]; then echo "$$DATABASE_URL"; else $(PY) -m webapp.devcluster url; fi

lint: $(STAMP)
	$(PY) -m ruff check webapp tests bench || true

i18n: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg -o webapp/translations/messages.pot webapp
	$(VENV)/bin/pybabel update -i webapp/translations/messages.pot -d webapp/translations
	$(VENV)/bin/pybabel compile -d webapp/translations

check: test

clean-db:
	$(PY) -m webapp.devcluster stop; rm -rf .local/pg
