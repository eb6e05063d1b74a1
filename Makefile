# The targets are exactly what CI runs (.ci/run calls `make test`).
GO ?= go
PKGS := ./...

.PHONY: run test vet fmt build fuzz bench bench-quick broker processor projector clean

## run: start the embedded broker and a processor, run the demo workload, serve until Ctrl-C
run:
	$(GO) run ./cmd/kcqrs demo

## test: the whole test suite (no network, no Docker)
test: vet
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt needed on the files above" && exit 1)
	$(GO) test -count=1 $(PKGS)
	$(GO) test -count=1 -race ./topology/... ./snapshots/... ./client/...

vet:
	$(GO) vet $(PKGS)

build:
	$(GO) build -o bin/ ./cmd/...

## fuzz: run each decoder fuzz test for a while (FUZZTIME=200000x: a count, since duration-bounded fuzzing can end spuriously on Go 1.26)
FUZZTIME ?= 200000x
fuzz:
	$(GO) test ./schemas -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./schemas -run '^$$' -fuzz '^FuzzDecodeJSON$$' -fuzztime $(FUZZTIME)
	$(GO) test ./topology -run '^$$' -fuzz '^FuzzDecodeSnapshotFast$$' -fuzztime $(FUZZTIME)

## bench: the full benchmark of BENCHMARKS.md (embedded broker; BENCH_FLAGS="--brokers host:9092" for a cluster)
BENCH_FLAGS ?=
bench:
	$(GO) build -o bin/kcqrs-bench ./cmd/kcqrs-bench
	./bin/kcqrs-bench --full --out bench-results.md $(BENCH_FLAGS)

## bench-quick: every benchmark at small sizes, as a CI smoke test (about a minute; no timing assertions)
bench-quick:
	$(GO) build -o bin/kcqrs-bench ./cmd/kcqrs-bench
	./bin/kcqrs-bench $(BENCH_FLAGS)

## broker / processor / projector: the pieces of `make run` as separate processes
broker:
	$(GO) run ./cmd/kcqrs broker
processor:
	$(GO) run ./cmd/processor --brokers 127.0.0.1:9092 --instance-id local-0
projector:
	$(GO) run ./cmd/projector --brokers 127.0.0.1:9092

clean:
	rm -rf .kcqrs bin
