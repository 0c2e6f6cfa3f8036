# One entry point for people and CI. `make test` sets up everything it needs on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test setup venv tools binaries lint crds crds-check unit integration sandbox sandbox-down bench clean \
	images images-push

test: setup lint crds-check unit integration

setup: venv tools binaries

venv: $(STAMP)
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 python3-venv; }
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

# kubectl is used by tests the way a user would use it (Debian's kubernetes-client when missing);
# docker-registry is the OCI registry the Helm chart tests pull from (clusternet_testing.charts).
tools:
	@command -v kubectl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client; }
	@command -v docker-registry >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry; }

binaries:
	@bash hack/control-plane-binaries.sh >/dev/null

lint: venv
	$(BIN)/ruff check src tests bench hack
	$(BIN)/mypy
	# the benchmarks import each other as top-level modules (bench/ is their sys.path[0])
	MYPYPATH=src:bench $(BIN)/mypy --strict --follow-imports=silent bench/*.py
	$(BIN)/lint-imports

crds: venv
	$(BIN)/python -m clusternet_api.crdgen crds/ --bundle deploy/hub/01-crds.yaml --bundle charts/clusternet-hub/crds/clusternet-crds.yaml

crds-check: venv
	$(BIN)/python -m clusternet_api.crdgen --check crds/ --bundle deploy/hub/01-crds.yaml --bundle charts/clusternet-hub/crds/clusternet-crds.yaml

unit: venv
	$(BIN)/pytest -q tests/unit

integration: setup
	$(BIN)/pytest -q tests/integration

# A parent and two children with the hub and two agents running, until Ctrl-C (see README).
sandbox: setup
	$(BIN)/python hack/sandbox.py

# Stops a sandbox started from another shell (SIGTERM: it stops every process it started, then exits).
sandbox-down:
	@pid=$$(cat .sandbox/sandbox.pid 2>/dev/null) && kill -TERM $$pid && while kill -0 $$pid 2>/dev/null; do sleep 0.2; done; \
	  echo "sandbox stopped"

# registration (~2 min), then the scale scenarios at 20 and 100 clusters (~7 min; 500 and 1,000 by hand with
# bench/scale.py --sizes, see bench/README.md), appended to bench/results/<date>-scale.md
bench: setup
	$(BIN)/python bench/registration.py
	$(BIN)/python bench/scale.py --sizes 20,100 --out bench/results/$$(date -u +%F)-scale.md

# The hub and agent images deploy/ and the charts name (README, "Build the images"). We publish none: build and
# push your own, e.g. `make images-push REGISTRY=registry.example.com/you TAG=v0.1.0`. Needs Docker with BuildKit
# (or DOCKER=podman); no part of `make test` or CI, which run the binaries, not images.
REGISTRY ?= ghcr.io/clusternet-py
TAG ?= v0.1.0
DOCKER ?= docker

images:
	$(DOCKER) build -f Dockerfile.hub -t $(REGISTRY)/clusternet-hub:$(TAG) .
	$(DOCKER) build -f Dockerfile.agent -t $(REGISTRY)/clusternet-agent:$(TAG) .

images-push: images
	$(DOCKER) push $(REGISTRY)/clusternet-hub:$(TAG)
	$(DOCKER) push $(REGISTRY)/clusternet-agent:$(TAG)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .sandbox
