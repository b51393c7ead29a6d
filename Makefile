# meshnode build, test and tooling entry points. Everything runs with only Go
# installed: generators and linters are `tool` directives in go.mod.

SHELL     := /bin/bash
GO        ?= go
BIN       ?= bin/meshnode
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/agentmesh/meshnode/node.Version=$(VERSION)
PKGS      := ./...
FUZZTIME  ?= 10s
TESTFLAGS ?= -count=1 -timeout 9m

.PHONY: all build run test e2e bench fuzz proto lint clean ui

all: build

build: ## Build bin/meshnode.
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/meshnode

run: build ## Start one node with every default: a single-node cluster.
	./$(BIN) run

test: ## Everything CI runs: unit, integration and the fast e2e subset.
	$(GO) test $(TESTFLAGS) $$($(GO) list ./... | grep -v '/e2e$$')
	$(GO) test $(TESTFLAGS) -v ./e2e/ 2>&1 | grep -E '^(=== RUN|--- |PASS|FAIL|ok|SUMMARY|panic)|_test.go:[0-9]+' ; exit $${PIPESTATUS[0]}

e2e: build ## Every end-to-end scenario (network namespaces when root).
	MESHNODE_E2E_FULL=1 $(GO) test -count=1 -timeout 30m -v ./e2e/...

bench: ## Benchmarks with in-run baselines; figures land in bench/results/.
	scripts/bench.sh

fuzz: ## Short runs of every fuzz target.
	@set -e; for line in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$line/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "fuzz $$line $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$line; \
	  done; done

proto: ## Regenerate proto/meshnode/v1 from its .proto sources.
	$(GO) tool buf generate

lint: ## gofmt, go vet, staticcheck, buf lint and stale generated code.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
	$(GO) tool buf lint
	@$(MAKE) --no-print-directory proto
	@if [ -n "$$(git status --porcelain -- proto)" ]; then echo "generated code in proto/ is stale: run 'make proto' and commit"; git status --porcelain -- proto; exit 1; fi
	@# The dashboard's built assets are committed (Go-only machines build the
	@# binary); a rebuild that changes them means they are stale.
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory ui >/dev/null && \
	  if [ -n "$$(git status --porcelain -- internal/dashboard/assets ui/dist)" ]; then echo "dashboard assets are stale: run 'make ui' and commit"; git status --porcelain -- internal/dashboard/assets ui/dist; exit 1; fi; \
	else echo "npm not found: dashboard assets not checked for staleness"; fi

ui: ## Rebuild the dashboard's committed assets (internal/dashboard/assets, ui/dist) with npm.
	cd ui && npm ci --no-audit --no-fund && npm run build

clean:
	rm -rf bin
