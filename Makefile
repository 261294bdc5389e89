# The two commands of the README: `make run` (set up and run the platform) and `make test` (set up and run
# the tests). Everything else here is a step of those two.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run migrate demo test test-sqlite test-fast check-services lint schema compose-config clean \
	help humanaesexpert-runtime

help:
	@echo "make run   - create .venv, install, migrate, load demo data, start web + worker (http://$(HOST):$(PORT)/)"
	@echo "make test  - create .venv, install, run the whole test suite against PostgreSQL and Redis"
	@echo "make humanaesexpert-runtime - the pinned runtime of released HumanAesExpert checkpoints (its own worker)"

$(INSTALLED): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.2
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

install: $(INSTALLED)

# The released HumanAesExpert checkpoints run their own remote code, written for transformers 4.44.2 with einops,
# timm and sentencepiece: an overlay of just those packages (requirements-humanaesexpert.lock), put first on the
# PYTHONPATH of the `humanaesexpert` worker only; torch, Django and everything else come from $(VENV).
HAE_RUNTIME ?= .venv-humanaesexpert
HAE_INSTALLED := $(HAE_RUNTIME)/.installed

$(HAE_INSTALLED): requirements-humanaesexpert.lock $(INSTALLED)
	rm -rf $(HAE_RUNTIME)
	$(PY) -m pip install --quiet --no-deps --only-binary :all: --target $(HAE_RUNTIME) -r requirements-humanaesexpert.lock
	PYTHONPATH=$(HAE_RUNTIME) $(PY) -c "from model_core.scoring import remote_code_runtime_check; \
	  print('HumanAesExpert runtime:', remote_code_runtime_check())"
	touch $@

humanaesexpert-runtime: $(HAE_INSTALLED)

migrate: install
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py demo_setup

run: demo
	$(PY) manage.py collectstatic --noinput --verbosity 0
	HOST=$(HOST) PORT=$(PORT) PY=$(PY) AESP_HUMANAESEXPERT_RUNTIME=$(HAE_RUNTIME) scripts/run_platform.sh

check-services: install
	@DJANGO_ENV=test $(PY) tests/services.py

# Ruff (configured in pyproject.toml) over the whole tree: part of `make test`, so of CI.
lint: install
	$(PY) -m ruff check .

# The tests marked both_databases (annotation, hot path included, and bad inputs) run on SQLite first, the
# embedded default of `make run`, whose write path differs; then everything runs on PostgreSQL.
test: lint check-services humanaesexpert-runtime test-sqlite
	DJANGO_ENV=test AESP_HUMANAESEXPERT_RUNTIME=$(abspath $(HAE_RUNTIME)) $(PY) -m pytest $(PYTEST_ARGS)

test-sqlite: install
	@sqlite_dir=$$(mktemp -d) && trap 'rm -rf "$$sqlite_dir"' EXIT && \
	  echo "SQLite pass: tests marked both_databases" && \
	  DJANGO_ENV=test DATABASE_URL="sqlite:///$$sqlite_dir/aesp.sqlite3" $(PY) -m pytest -m both_databases -q

test-fast: check-services humanaesexpert-runtime
	DJANGO_ENV=test AESP_HUMANAESEXPERT_RUNTIME=$(abspath $(HAE_RUNTIME)) $(PY) -m pytest -m "not browser and not slow" $(PYTEST_ARGS)

schema: install
	$(PY) manage.py spectacular --validate --fail-on-warn --file var/openapi.yml

compose-config:
	docker-compose -f docker-compose.yml config --quiet

clean:
	rm -rf $(VENV) $(HAE_RUNTIME) var .pytest_cache

# The loop end to end on synthetic images (issue 8): needs the platform running (`make run` in another terminal:
# its worker serves the cpu and gpu queues). DEMO_LOOP_ARGS="--images 300 --epochs 12" to change the size.
.PHONY: demo-loop
demo-loop: migrate
	$(PY) manage.py demo_loop $(DEMO_LOOP_ARGS)
