# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# uv installs from uv.lock; it comes from tools/uv-requirements.txt (version pinned, hashes checked).
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install lock lock-check lint run test demo bench proto proto-check clean up down deploy-configs

$(UV): tools/uv-requirements.txt
	@echo "== installing uv (pinned in tools/uv-requirements.txt)"
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --disable-pip-version-check --require-hashes -r tools/uv-requirements.txt
	touch $(UV)

$(STAMP): $(UV) uv.lock VERSION pyproject.toml proto/pyproject.toml plugin/pyproject.toml aggregator/pyproject.toml
	@echo "== installing the workspace from uv.lock into $(VENV) (first time: about a minute)"
	$(UV) sync --locked --python $(PYTHON)
	touch $(STAMP)

install: $(STAMP)

# Refresh uv.lock after editing any pyproject.toml (the one command that changes pins).
lock: $(UV)
	$(UV) lock --python $(PYTHON)

# Fails when a pyproject.toml and uv.lock disagree.
lock-check: $(UV)
	$(UV) lock --check --python $(PYTHON)

# The aggregator on the embedded store in ./var/: gRPC 127.0.0.1:50051, HTTP 127.0.0.1:8080.
run: $(STAMP)
	$(BIN)/chargeback serve --store-dsn chdb://./var/chargeback

lint: $(STAMP)
	$(BIN)/ruff check .

test: lock-check lint $(STAMP)
	$(BIN)/python -m pytest -q

# The whole path without Kong: aggregator + real plugin server + Kong harness front + mock LLM.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

# Real Kong + aggregator + ClickHouse server + mock LLM + Grafana in Docker (docs/deploy.md).
# Needs only Docker with the compose plugin; `make down` keeps the data volumes
# (`docker compose down -v` drops them).
COMPOSE ?= docker compose
up:
	$(COMPOSE) up --detach --build --wait
	@echo "Kong proxy http://127.0.0.1:8000  Grafana http://127.0.0.1:3000  aggregator metrics http://127.0.0.1:8080/metrics"

down:
	$(COMPOSE) down

# Regenerate files derived from one source: deploy/kong/kong.compose.yml (from kong.yml)
# and deploy/grafana/chargeback.json (from deploy/grafana/dashboard.py).
deploy-configs: $(STAMP)
	$(BIN)/python deploy/kong/render_compose_config.py
	$(BIN)/python deploy/grafana/dashboard.py

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache
