# Leadflow — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV := bash scripts/uv.sh
PROTO_FILES := $(wildcard proto/leadflow/v1/*.proto)
PROTOC = $(UV) run --frozen python -m grpc_tools.protoc -I proto

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

.PHONY: setup
setup: ## Create the environment (uv, Python deps from uv.lock)
	@bash scripts/setup.sh

.PHONY: run
run: setup ## Migrate and start the whole mesh locally (Ctrl-C stops it)
	@$(UV) run --frozen python -m leadflow_cli dev-run

.PHONY: k8s-apiserver
k8s-apiserver: ## Build the real Kubernetes API server tier from Debian sid's packages (cached; first run ~10 min)
	@nice -n 10 bash scripts/k8s-apiserver.sh build >/dev/null

.PHONY: test
test: setup k8s-apiserver ## Run the tests against this machine's PostgreSQL and Redis
	@tools=$$(bash scripts/prometheus-tools.sh) || echo "promtool/prometheus unavailable: their tests will say so"; \
	PATH="$${tools:+$$tools:}$$PATH" $(UV) run --frozen pytest $(PYTEST_ARGS)

.PHONY: lint
lint: setup proto-check ## ruff, mypy --strict and proto-check
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

.PHONY: fmt
fmt: setup ## Format and autofix with ruff
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

.PHONY: proto
proto: ## Regenerate the Python stubs (with .pyi) beside the .proto files
	$(PROTOC) --python_out=proto --mypy_out=proto --grpc_python_out=proto --mypy_grpc_out=proto $(PROTO_FILES)

.PHONY: proto-check
proto-check: setup ## Fail when the committed stubs are stale
	@tmp=$$(mktemp -d); \
	$(PROTOC) --python_out=$$tmp --mypy_out=$$tmp --grpc_python_out=$$tmp --mypy_grpc_out=$$tmp $(PROTO_FILES) >$$tmp.log 2>&1 \
	  || { cat $$tmp.log; echo "protoc failed"; rm -rf $$tmp $$tmp.log; exit 1; }; \
	rm -f $$tmp.log; \
	for f in $$(cd $$tmp && find . -name __pycache__ -prune -o -name '*_pb2*' -print); do \
	  cmp -s $$tmp/$$f proto/$$f || { echo "stale generated stub: proto/$$f (run make proto)"; rm -rf $$tmp; exit 1; }; \
	done; \
	extra=$$(comm -13 <(cd $$tmp && find . -name __pycache__ -prune -o -name '*_pb2*' -print | sort) <(cd proto && find . -name __pycache__ -prune -o -name '*_pb2*' -print | sort)); \
	rm -rf $$tmp; \
	[ -z "$$extra" ] || { echo "generated stubs without a .proto: $$extra"; exit 1; }; \
	echo "proto stubs are up to date"

.PHONY: bench
bench: setup ## Floors, durable ACK under wrk, per-lead costs, workers (BENCH_ARGS='--only ack')
	@command -v wrk >/dev/null || { echo "wrk is not installed: make bench-setup (apt-get install -y wrk)"; exit 1; }
	@nice -n 10 $(UV) run --frozen python -m bench $(BENCH_ARGS)

.PHONY: faults
faults: setup ## Fault suite: the mesh on its own PostgreSQL and Redis, one fault at a time (FAULTS_ARGS='--only baseline')
	@nice -n 10 $(UV) run --frozen python -m faults $(FAULTS_ARGS)

.PHONY: bench-setup
bench-setup: ## Install wrk, the load generator of make bench (Debian/Ubuntu package)
	@command -v wrk >/dev/null || { $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y wrk; }

.PHONY: chart-test
chart-test: setup k8s-apiserver ## Render, lint and validate the Helm chart; the CRD and operator on a real API server
	@tools=$$(bash scripts/prometheus-tools.sh) || echo "promtool unavailable: its tests will say so"; \
	PATH="$${tools:+$$tools:}$$PATH" $(UV) run --frozen pytest tests/chart operator -q

.PHONY: clean
clean: ## Remove the environment and local data
	rm -rf .venv var
