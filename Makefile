# extauthz — run `make help` for the targets.
SHELL := /usr/bin/env bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN := bin/extauthz
FUZZTIME ?= 30s
IMAGE ?= ghcr.io/extauthz/extauthz:$(VERSION)

.PHONY: help run test lint fuzz bench bench-limits build image manifests clean soak

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build the static binary into bin/extauthz
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/extauthz

run: build ## standalone with the Nexgent demo policy and ./data
	$(BIN) standalone --data-dir ./data --policy examples/policies/nexgent.yaml --log-format console

test: lint ## everything CI runs: gofmt, vet, staticcheck, and all tests with the race detector
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -race -count=1 -timeout 5m ./admin -cluster # the admin API suite again, on a follower of a 3-member cluster

lint: ## gofmt check, go vet and staticcheck (pinned in go.mod as a tool)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

fuzz: ## run every fuzz target for FUZZTIME (default 30s) each
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

bench: build ## the performance table of BENCHMARKS.md (real processes on loopback)
	$(GO) run ./internal/bench -bin $(BIN)

bench-limits: build ## Check with every key under a never-refusing rate limit beside no limits, 10,000 active keys, one run
	$(GO) run ./internal/bench -bin $(BIN) -limits -keys-small 10000

soak: build ## decisions under load + key churn, and leak checks, on real processes (SOAK_DURATION, default 10m)
	$(GO) run ./internal/soak -bin $(BIN) -duration $(or $(SOAK_DURATION),10m)

image: ## docker image (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

manifests: ## render each kustomize overlay into bin/manifests/
	$(GO) run ./manifests/render -out bin/manifests

clean: ## remove build output
	rm -rf bin
