#!/usr/bin/env bash
# Usage: .ci/with-broker.sh <command> [args...]
# Starts `bin/kcqrs broker` as a separate process on a free port with its own
# data directory, runs the command with KCQRS_TEST_BROKERS (and BROKERS) set
# to its address, then stops the broker. Exits with the command's status.
set -euo pipefail
bin=${KCQRS_BIN:-bin/kcqrs}
dir=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$dir"
}
trap cleanup EXIT
for attempt in 1 2 3 4 5; do
	port=$((20000 + RANDOM % 9000))
	"$bin" broker --port "$port" --data-dir "$dir/broker-$attempt" >"$dir/broker.log" 2>&1 &
	pid=$!
	for _ in $(seq 1 100); do
		if grep -q "Ctrl-C to stop" "$dir/broker.log"; then break 2; fi
		if ! kill -0 "$pid" 2>/dev/null; then break; fi
		sleep 0.1
	done
	echo "broker on port $port did not start (attempt $attempt):" >&2
	cat "$dir/broker.log" >&2
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=
done
if [ -z "$pid" ]; then echo "could not start a broker" >&2; exit 1; fi
export KCQRS_TEST_BROKERS="127.0.0.1:$port" BROKERS="127.0.0.1:$port"
echo "broker process $pid on $BROKERS"
"$@"
