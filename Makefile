# strata build and test entry points. `make test` is what CI runs.

GO      ?= go
BIN     ?= bin/strata
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# Seconds each fuzz target runs under `make fuzz`.
FUZZTIME ?= 10s

.PHONY: all build test test-deps demo bench fuzz fmt vet clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/strata

# Installs the peer tools (as root), then vets and runs every test.
test: test-deps
	$(GO) vet ./...
	$(GO) test -timeout 20m ./...

test-deps:
	./tests/setup.sh

demo:
	$(GO) run ./cmd/strata demo

bench:
	$(GO) run ./tests/bench

# Runs every fuzz target of every package for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

fmt:
	gofmt -l -w .

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
