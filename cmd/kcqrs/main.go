// Command kcqrs is the command-line companion of the processor:
//
//	kcqrs demo    run the embedded broker, a processor with the transfer saga, the projector and a short workload, then keep serving
//	kcqrs broker  run only the embedded Kafka-protocol broker on a fixed port
//	kcqrs send    send one command and print its reply
//	kcqrs transfer  start a transfer between two accounts (the saga completes it)
//	kcqrs transfers list pending transfers; resume a saga group that lost its offsets
//	kcqrs groups  list consumer groups with their lag; reset / rebuild: replay the read models
//	kcqrs dlq     list, show and re-drive dead letters
//	kcqrs console serve the web console (topology, workers, groups, dead letters, aggregates)
//	kcqrs history one aggregate's events, or its state at a version or time; reindex
package main

import (
	"errors"
	"fmt"
	"os"
)

const usage = `usage: kcqrs <command> [flags]

commands:
  demo    start the embedded broker, a processor (with the transfer saga and
          its /metrics, /healthz, /readyz), the projector (read models and
          their query API) and the web console (http://127.0.0.1:8090), run
          a short demo workload, print what happened, and keep serving until
          Ctrl-C (what make run does)
  broker  run the embedded Kafka-protocol broker (persisted) on a fixed port
  send    send one command and print its reply as JSON
  transfer  move money between two accounts: sends DebitForTransfer to the
          source; the transfer saga credits the target (or refunds)
  transfers list pending transfers; 'transfers resume' after lost saga offsets
  groups  list consumer groups with their lag per partition
  reset   reset a version of the read models (plan first; --execute to act)
  rebuild follow a new version of the read models until it has caught up
  dlq     list, show and re-drive dead letters (list | show | redrive)
  console serve a read-only web console (default http://127.0.0.1:8090):
          the topology, the workers and the partitions they own, consumer
          groups with their lag, dead letters (re-drive with
          --allow-redrive) and an aggregate inspector
  history one aggregate's events, or its state at --at-version/--at-time,
          from a processor's history index; 'history reindex' rebuilds it
  erase   erase an aggregate's personal data: kcqrs erase <type> <id>
          (plan first; --execute to act; docs/erasure.md)

Run 'kcqrs <command> -h' for the flags of a command. Every command but demo
and broker takes the processor's connection settings (--brokers, --tls-*,
--sasl-*, and their KCQRS_* variables).

` + exitCodes + "\n"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "demo":
		err = runDemo(os.Args[2:])
	case "broker":
		err = runBroker(os.Args[2:])
	case "send":
		err = runSend(os.Args[2:])
	case "transfer":
		err = runTransfer(os.Args[2:])
	case "transfers":
		err = runTransfers(os.Args[2:])
	case "groups":
		err = runGroups(os.Args[2:])
	case "reset":
		err = runReset(os.Args[2:])
	case "rebuild":
		err = runRebuild(os.Args[2:])
	case "dlq":
		err = runDLQ(os.Args[2:])
	case "console":
		err = runConsole(os.Args[2:])
	case "history":
		err = runHistory(os.Args[2:])
	case "erase":
		err = runErase(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "kcqrs: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	var ee *exitError
	if err != nil && (!errors.As(err, &ee) || ee.err != nil) {
		fmt.Fprintln(os.Stderr, "kcqrs:", err)
	}
	os.Exit(exitCode(err))
}
