# The targets are exactly what CI runs (.ci/run calls `make test`).
GO ?= go
PKGS := ./...

.PHONY: run test test-kafka test-kafka-process contract-test vet fmt build fuzz fuzz-ci schemas-check bench bench-quick chaos chaos-ci console-test broker processor projector describe clean

## run: start the embedded broker, a processor (with the transfer saga) and the projector, run the demo workload, serve until Ctrl-C
# The pieces are built, then exec'd: the program gets Ctrl-C itself and its
# clean exit is make's (`go run` exits 1 when interrupted, so make said Error 1).
run:
	$(GO) build -o bin/kcqrs ./cmd/kcqrs
	exec ./bin/kcqrs demo

.PHONY: run-secure schemas-release
## run-secure: the same pieces against `kcqrs broker --secure` (mutual TLS, SCRAM-SHA-256, ACLs; see docs/operations.md "Security")
run-secure:
	GO=$(GO) ./deploy/run-secure.sh

## test: the whole test suite (no network, no Docker)
test: vet
	@unformatted="$$(gofmt -l .)"; if [ -n "$$unformatted" ]; then echo "$$unformatted"; echo "gofmt needed on the files above"; exit 1; fi
	$(GO) test -count=1 $(PKGS)
	$(GO) test -count=1 -race ./topology/... ./snapshots/... ./client/... ./ops/... ./cmd/processor/... ./saga/... ./projection/... ./cmd/projector/... ./console/...

## test-kafka: the integration tests against a real cluster (BROKERS=host:9092; TLS/SASL via KCQRS_TEST_* variables)
BROKERS ?= 127.0.0.1:9092
test-kafka:
	KCQRS_TEST_BROKERS=$(BROKERS) $(GO) test -count=1 ./topology/...

## contract-test: the Node client of contract/node (kafkajs, written from docs/wire-contract.md) against
## `kcqrs broker` and a processor, each a separate process; .ci/run calls it (needs node and npm)
contract-test:
	$(GO) build -o bin/kcqrs ./cmd/kcqrs
	$(GO) build -o bin/processor ./cmd/processor
	cd contract/node && npm ci --no-audit --no-fund
	.ci/with-broker.sh .ci/contract.sh

## test-kafka-process: test-kafka against `kcqrs broker` run as a separate process (free port, own data dir); .ci/run calls it
test-kafka-process:
	$(GO) build -o bin/kcqrs ./cmd/kcqrs
	.ci/with-broker.sh sh -c '$(MAKE) --no-print-directory test-kafka BROKERS="$$BROKERS"'

vet:
	$(GO) vet $(PKGS)

build:
	$(GO) build -o bin/ ./cmd/...

## schemas-check: fail, saying what broke, when a current schema (with its upcasters) cannot read an older version in history/ of a command, event or snapshot;
## SCHEMAS="dir ..." checks your own schema directories too, COMPAT=forward|full also fails when the previous release could not read new data (rollbacks)
SCHEMAS ?= schemas/account schemas/folder schemas/kcqrs
COMPAT ?= backward
schemas-check:
	$(GO) test -count=1 -run '^(TestSchemasCompatible|TestReleasedStayKnown)$$' -v ./schemas ./topology
	$(GO) run ./cmd/kcqrs-schemas check --compatibility $(COMPAT) $(SCHEMAS)

## schemas-release: copy the current schema SCHEMA=dir/Name.avsc to dir/history/Name.v<N>.avsc (N: its version), never overwriting a released file
schemas-release:
	$(GO) run ./cmd/kcqrs-schemas release $(SCHEMA)

## fuzz: run each decoder fuzz test for a while (FUZZTIME=200000x: a count, since duration-bounded fuzzing can end spuriously on Go 1.26)
FUZZTIME ?= 200000x
fuzz:
	$(GO) test ./schemas -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./schemas -run '^$$' -fuzz '^FuzzDecodeJSON$$' -fuzztime $(FUZZTIME)
	$(GO) test ./schemas -run '^$$' -fuzz '^FuzzResolve$$' -fuzztime $(FUZZTIME)
	$(GO) test ./schemas -run '^$$' -fuzz '^FuzzCompiledDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./projection -run '^$$' -fuzz '^FuzzDecodeAccount$$' -fuzztime $(FUZZTIME)
	$(GO) test ./topology -run '^$$' -fuzz '^FuzzDecodeSnapshotFast$$' -fuzztime $(FUZZTIME)

## fuzz-ci: every fuzz target of every package (found with `go test -list`), each for a short bounded
## count (FUZZCI=2000x); .ci/run calls it after `make test`. Seed corpora live in <pkg>/testdata/fuzz/FuzzXxx/.
FUZZCI ?= 2000x
fuzz-ci:
	@$(GO) test -list '^Fuzz' $(PKGS) | awk '/^Fuzz/ {names = names " " $$1} /^ok / {if (names != "") print $$2 names; names = ""}' | \
	while read -r pkg targets; do for f in $$targets; do \
		echo "fuzz $$pkg $$f ($(FUZZCI))"; \
		$(GO) test "$$pkg" -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZCI) || exit 1; \
	done; done

## bench: the full benchmark of BENCHMARKS.md (embedded broker; BENCH_FLAGS="--brokers host:9092" for a cluster)
BENCH_FLAGS ?=
bench:
	$(GO) build -o bin/kcqrs-bench ./cmd/kcqrs-bench
	./bin/kcqrs-bench --full --out bench-results.md $(BENCH_FLAGS)

## bench-quick: every benchmark at small sizes, as a CI smoke test (about a minute; no timing assertions)
bench-quick:
	$(GO) build -o bin/kcqrs-bench ./cmd/kcqrs-bench
	./bin/kcqrs-bench $(BENCH_FLAGS)

## chaos: the crash test: 3 processor processes killed (KILLS SIGKILLs) and restarted at random, broker
## faults, forced rebalances, then a full exactly-once check of every topic and store (SEED=n replays a schedule)
SEED ?= 1
KILLS ?= 100
chaos:
	$(GO) run ./cmd/chaos -kills $(KILLS) -seed $(SEED)

## console-test: the web console's tests, its browser tests included (headless Chromium: apt-get install -y chromium);
## a missing browser fails here instead of skipping; screenshots go to CONSOLE_SHOTS (default: a new temp dir, logged)
CONSOLE_SHOTS ?=
console-test:
	KCQRS_CONSOLE_BROWSER=require KCQRS_CONSOLE_SCREENSHOTS=$(CONSOLE_SHOTS) $(GO) test -count=1 -v -run '.' ./console/

## chaos-ci: the bounded chaos run of .ci/run (20 kills, about 2-4 minutes on 2 cores), in hostile mode: forged
## reply topics and partitions, huge and compressed commands and amplifying rejections mixed into the workload;
## with a master key and three accounts erased during the run (docs/erasure.md)
chaos-ci:
	$(GO) run ./cmd/chaos -kills 20 -seed $(SEED) -quiet -hostile -erasures 3

## chaos-crashloop: the liveness test: a SIGKILL of a random worker every 5-10 s (KILLS, default 20 here), the
## workers' default timeouts; reports the longest time any partition made no progress (docs/operations.md "Liveness under crashes")
.PHONY: chaos-crashloop
chaos-crashloop:
	$(GO) run ./cmd/chaos -mode crashloop -kills $(if $(filter command line environment,$(origin KILLS)),$(KILLS),20) -seed $(SEED)

## broker / processor / projector: the pieces of `make run` as separate processes
broker:
	$(GO) build -o bin/kcqrs ./cmd/kcqrs
	exec ./bin/kcqrs broker
## a second worker beside the first: make processor INSTANCE=local-1 OPS_ADDR=127.0.0.1:8081
INSTANCE ?= local-0
OPS_ADDR ?= 127.0.0.1:8080
processor:
	$(GO) build -o bin/processor ./cmd/processor
	exec ./bin/processor --brokers 127.0.0.1:9092 --instance-id $(INSTANCE) --state-dir .kcqrs/state/$(INSTANCE) --http-addr $(OPS_ADDR)
projector:
	$(GO) build -o bin/projector ./cmd/projector
	exec ./bin/projector --brokers 127.0.0.1:9092

## describe: print the processor topology (text and Mermaid)
describe:
	$(GO) run ./cmd/processor describe
	$(GO) run ./cmd/processor describe --format mermaid

clean:
	rm -rf .kcqrs bin
