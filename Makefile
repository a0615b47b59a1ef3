# agentline — run `make help` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH; else the one `make uv` installs from PyPI into this Python (run as a module,
# so it works wherever pip put its scripts).
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=

.PHONY: help
help: ## List the targets with one line each
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: uv
uv: ## Install uv from PyPI when it is missing
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv>=0.5" \
		|| python3 -m pip install --quiet --user "uv>=0.5"

.PHONY: sync
sync: uv ## Install the locked workspace into .venv (uv sync --locked)
	@$(UV) sync --locked --all-packages

.PHONY: dev
dev: sync ## Run the whole system locally (embedded Redis/emulator where nothing is configured)
	@$(UV) run --no-sync python -m agentline.devrun

.PHONY: demo
demo: sync ## One session as a frontend would do it, against `make dev`
	@if [ -e /var/run/netns/agentline-dev ]; then \
		ip netns exec agentline-dev $(UV) run --no-sync python -m agentline.demo; \
	else $(UV) run --no-sync python -m agentline.demo; fi

.PHONY: doctor
doctor: sync ## Check every cause of "the agent never joins" against `make dev`
	@if [ -e /var/run/netns/agentline-dev ]; then \
		ip netns exec agentline-dev env LIVEKIT_URL=$${LIVEKIT_URL:-ws://10.203.250.1:7880} \
			$(UV) run --no-sync agentline doctor $(DOCTOR_ARGS); \
	else $(UV) run --no-sync agentline doctor $(DOCTOR_ARGS); fi

.PHONY: test
test: sync ## Run the whole test suite (real Redis; embedded one when none answers)
	@$(UV) run --no-sync pytest $(PYTEST_ARGS)

.PHONY: lint
lint: sync ## ruff check and ruff format --check
	@$(UV) run --no-sync ruff check .
	@$(UV) run --no-sync ruff format --check .

.PHONY: format
format: sync ## Apply ruff fixes and formatting
	@$(UV) run --no-sync ruff check --fix .
	@$(UV) run --no-sync ruff format .

.PHONY: typecheck
typecheck: sync ## mypy on the shared library, the services, the emulator and the benchmarks
	@$(UV) run --no-sync mypy -p agentline -p token_api -p dispatcher -p agent_worker -p livekit_emulator -p bench

.PHONY: bench
bench: sync ## Run the benchmarks; figures are printed and written to bench/results/
	@$(UV) run --no-sync python -m bench

.PHONY: openapi
openapi: sync ## Export token-api's OpenAPI schema to services/token-api/openapi.json
	@$(UV) run --no-sync python -m token_api.openapi_export services/token-api/openapi.json

.PHONY: clean
clean: ## Remove caches, the virtualenv and dev state
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache .dev
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
