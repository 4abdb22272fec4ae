# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test demo bench proto proto-check clean up down deploy-configs

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The aggregator on the embedded store in ./var/: gRPC 127.0.0.1:50051, HTTP 127.0.0.1:8080.
run: $(STAMP)
	$(BIN)/chargeback serve --store-dsn chdb://./var/chargeback

test: $(STAMP)
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
	rm -rf $(VENV) var build *.egg-info .pytest_cache
