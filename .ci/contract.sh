#!/usr/bin/env bash
# Usage (inside .ci/with-broker.sh): .ci/contract.sh
# Starts bin/processor as a separate process on $BROKERS, runs the Node
# contract test (contract/node, kafkajs) against it, then stops the processor.
set -euo pipefail
dir=$(mktemp -d)

bin/processor --brokers "$BROKERS" --instance-id contract-0 --state-dir "$dir/state" \
	--http-addr 127.0.0.1:0 --partitions 3 --reply-topics 'contract-replies-*' >"$dir/processor.log" 2>&1 &
pid=$!
status=0
(cd contract/node && KCQRS_BROKERS="$BROKERS" node --test) || status=$?
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
if [ "$status" -ne 0 ]; then
	echo "contract test failed; the processor's log:" >&2
	tail -n 50 "$dir/processor.log" >&2
fi
rm -rf "$dir"
exit "$status"
