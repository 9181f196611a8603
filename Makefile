# bs-market — `make run` starts the exchange, `make test` runs every test.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench bench-http psql db-url lint check i18n sql-docs clean-db chaos backup restore

$(STAMP): requirements.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m devserver.run

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: $(STAMP)
	$(PY) -m bench.ledger

# The web under wrk, next to a bare Flask hello (docs/PERFORMANCE.md, "Web performance"; needs wrk).
bench-http: $(STAMP)
	@command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install -y wrk"; exit 1; }
	$(PY) -m bench.http

# The DBA's door: psql as the owner on the running database.
psql: $(STAMP)
	@$(PY) -m devserver.cluster psql

db-url: $(STAMP)
	@if [ -n "$$DATABASE_URL" ]; then echo "$$DATABASE_URL"; else $(PY) -m devserver.cluster url; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check --select F,E9 webapp sandbox devserver tests bench docs

# Source strings are Portuguese; the English catalog translates them. Form
# labels, validator messages and flashes are extracted by their call names and
# translated when rendered (macros.html, base.html).
I18N_KEYWORDS := -k _l -k N_ -k flash -k StringField -k EmailField -k PasswordField -k SelectField -k AmountField \
	-k DecimalField -k IntegerField -k TextAreaField -k BooleanField -k DateField -k FileField -k HiddenField \
	-k RadioField -k SelectMultipleField -k DataRequired -k InputRequired -k Length -k Email -k EqualTo \
	-k NumberRange -k Optional -k ValidationError -k FileRequired -k FileAllowed -k SubmitField
i18n: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg $(I18N_KEYWORDS) -o webapp/translations/messages.pot .
	$(VENV)/bin/pybabel update -i webapp/translations/messages.pot -d webapp/translations -l en
	$(VENV)/bin/pybabel compile -d webapp/translations

# docs/SQL.md, generated from the COMMENTs of a freshly migrated database.
sql-docs: $(STAMP)
	$(PY) docs/gen_sql_docs.py --fresh

check: lint test

clean-db:
	$(PY) -m devserver.cluster stop; rm -rf .local/pg

# docs/RELIABILITY.md: the exchange hammered while things die (CHAOS_OPS, CHAOS_WORKERS, CHAOS_SEED).
chaos: $(STAMP)
	$(PY) -m bench.chaos

# A base backup of the `make run` cluster (its WAL is archived), and a point-in-time restore of it
# into a new data directory: make restore TARGET_TIME='2026-12-02 17:40:00+00' [BACKUP=dir] [RESTORE_PORT=n]
backup: $(STAMP)
	@$(PY) -m devserver.cluster backup

restore: $(STAMP)
	@TARGET_TIME="$(TARGET_TIME)" $(PY) -m devserver.cluster restore
