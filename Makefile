# strata build and test entry points. `make test` is what CI runs.

GO      ?= go
BIN     ?= bin/strata
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# Seconds each fuzz target runs under `make fuzz`.
FUZZTIME ?= 10s
# Kill points per command under `make crash` (`make test` runs 3).
CRASH_POINTS ?= 25

.PHONY: all build test test-deps demo bench fuzz crash fmt vet clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/strata

# Installs the peer tools (as root), then vets and runs every test. No test
# cache: the end-to-end tests depend on installed tools go test cannot see.
# STRATA_TEST_STRICT=1 turns every test that would be skipped for lack of
# root or a tool into a failure (internal/testenv): plain `go test ./...`
# skips those, `make test` never passes without them.
test: export STRATA_TEST_STRICT = 1
test: test-deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

test-deps:
	bash tests/setup.sh

demo:
	$(GO) run ./cmd/strata demo

bench:
	$(GO) run ./tests/bench

# Runs every fuzz target of every package for FUZZTIME each, and fails at
# the end if any target failed (tests/fuzz.sh: it runs a target again when
# only Go's fuzztime race stopped it, go.dev/issue/75804).
fuzz: export STRATA_TEST_STRICT = 1
fuzz:
	GO=$(GO) bash tests/fuzz.sh $(FUZZTIME)

# The crash suite with many kill points per writing command, and the
# concurrency tests (as root, like `make test`).
crash: export STRATA_TEST_STRICT = 1
crash:
	STRATA_CRASH_POINTS=$(CRASH_POINTS) $(GO) test -count=1 -timeout 60m -v \
		-run '^(TestCrashSuite|TestFailedWriterKeepsOthersWork|TestConcurrentWritersLoseNothing)$$' ./tests

fmt:
	gofmt -l -w .

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
