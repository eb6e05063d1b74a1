# The targets are exactly what CI runs (.ci/run calls `make test`).
GO ?= go
PKGS := ./...

.PHONY: run test vet fmt build fuzz chaos chaos-ci broker processor projector clean

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

## chaos: the crash test: 3 processor processes killed (KILLS SIGKILLs) and restarted at random, broker
## faults, forced rebalances, then a full exactly-once check of every topic and store (SEED=n replays a schedule)
SEED ?= 1
KILLS ?= 100
chaos:
	$(GO) run ./cmd/chaos -kills $(KILLS) -seed $(SEED)

## chaos-ci: the bounded chaos run of .ci/run (20 kills, about 2-3 minutes on 2 cores)
chaos-ci:
	$(GO) run ./cmd/chaos -kills 20 -seed $(SEED) -quiet

## broker / processor / projector: the pieces of `make run` as separate processes
broker:
	$(GO) run ./cmd/kcqrs broker
processor:
	$(GO) run ./cmd/processor --brokers 127.0.0.1:9092 --instance-id local-0
projector:
	$(GO) run ./cmd/projector --brokers 127.0.0.1:9092

clean:
	rm -rf .kcqrs bin
