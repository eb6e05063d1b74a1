#!/bin/sh
# make run-secure: the pieces of `make run` against the embedded broker with
# mutual TLS, SASL SCRAM-SHA-256 and ACLs (`kcqrs broker --secure`). Each
# binary logs in as its own user with exactly the permissions it documents;
# the broker writes their settings to $DIR/broker/<user>.env.
set -eu
DIR=${DIR:-.kcqrs-secure}
PORT=${PORT:-9093}
PROCESSOR_HTTP=${PROCESSOR_HTTP:-127.0.0.1:8080}
QUERY_HTTP=${QUERY_HTTP:-127.0.0.1:8088}
PROJECTOR_OPS=${PROJECTOR_OPS:-127.0.0.1:8089}
GO=${GO:-go}

$GO build -o bin/ ./cmd/kcqrs ./cmd/processor ./cmd/projector
mkdir -p "$DIR/logs" "$DIR/broker"
rm -f "$DIR"/broker/*.env
./bin/kcqrs broker --secure --port "$PORT" --data-dir "$DIR/broker" >"$DIR/logs/broker.log" 2>&1 &
pids=$!
trap 'kill $pids 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
i=0
until [ -f "$DIR/broker/kcqrs-cli.env" ]; do
	i=$((i + 1))
	[ $i -le 300 ] || { cat "$DIR/logs/broker.log"; exit 1; }
	sleep 0.1
done
(set -a; . "$DIR/broker/kcqrs-processor.env"; exec ./bin/processor --instance-id local-0 --state-dir "$DIR/state" --http-addr "$PROCESSOR_HTTP") >"$DIR/logs/processor.log" 2>&1 &
pids="$pids $!"
(set -a; . "$DIR/broker/kcqrs-projector.env"; exec ./bin/projector --state-dir "$DIR/projector" --http "$QUERY_HTTP" --ops-addr "$PROJECTOR_OPS") >"$DIR/logs/projector.log" 2>&1 &
pids="$pids $!"
echo "secured broker on 127.0.0.1:$PORT (mutual TLS, SCRAM-SHA-256, ACLs); logs in $DIR/logs"
echo "processor: http://$PROCESSOR_HTTP/readyz   projector: http://$PROJECTOR_OPS/readyz   queries: http://$QUERY_HTTP"

# Wait until the processor has created its topics and is ready.
i=0
until curl -sf "http://$PROCESSOR_HTTP/readyz" >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -le 600 ] || { echo "processor not ready after 60s:"; tail -n 20 "$DIR/logs/processor.log"; exit 1; }
	sleep 0.1
done

# The demo workload, as user kcqrs-cli (the KCQRS_* variables of its env
# file); WORKLOAD=0 only starts the services.
if [ "${WORKLOAD:-1}" = 0 ]; then wait; exit; fi
set -a; . "$DIR/broker/kcqrs-cli.env"; set +a
run=$(date +%s)
acc=acc-$run
./bin/kcqrs send --id "$acc" --type OpenAccount --data '{"owner":"Alice","currency":"EUR"}' --expected-version no_stream --timeout 60s
./bin/kcqrs send --id "$acc" --type Deposit --data '{"amount":10000}'
./bin/kcqrs send --id "$acc" --type Withdraw --data '{"amount":25000}' || [ $? -eq 3 ] # REJECTED: no overdraft
./bin/kcqrs send --id "$acc-2" --type OpenAccount --data '{"owner":"Bo","currency":"EUR"}'
./bin/kcqrs transfer --from "$acc" --to "$acc-2" --amount 1000 --wait # the saga credits and completes it
i=0
until curl -sf "http://$PROJECTOR_OPS/readyz" >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -le 600 ] || { echo "projector not ready after 60s:"; tail -n 20 "$DIR/logs/projector.log"; exit 1; }
	sleep 0.1
done
echo "read model: $(curl -s "http://$QUERY_HTTP/v1/accounts/$acc?min_version=4&wait=30s")"
echo "serving until Ctrl-C; in another terminal: set -a; . $DIR/broker/kcqrs-cli.env; set +a; go run ./cmd/kcqrs send ..."
wait
