package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/client"
)

// runTransfer sends the first leg of a transfer. The rest is the saga's job;
// the reply says whether the money left the source.
func runTransfer(args []string) error {
	fs := flag.NewFlagSet("transfer", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	from := fs.String("from", "", "source account id")
	to := fs.String("to", "", "target account id")
	amount := fs.Int64("amount", 0, "amount in minor units (cents)")
	transferID := fs.String("transfer-id", "", "transfer id (default random); reuse it with the same --command-id to retry")
	cmdID := fs.String("command-id", "", "command id (reuse it to retry safely; default random)")
	timeout := fs.Duration("timeout", 15*time.Second, "how long to wait for the reply")
	_ = fs.Parse(args)
	if *from == "" || *to == "" || *amount <= 0 {
		fs.Usage()
		return errors.New("transfer: --from, --to and a positive --amount are required")
	}
	if *transferID == "" {
		*transferID = client.NewID()
	}
	// The command in Avro's JSON encoding (the Avro field names).
	body := fmt.Appendf(nil, `{"transferId":%q,"to":%q,"amount":%d}`, *transferID, *to, *amount)
	rep, err := sendOne(client.Config{Brokers: strings.Split(*brokers, ",")}, *timeout,
		client.Command{AggregateType: account.Name, AggregateID: *from, Type: "DebitForTransfer", ID: *cmdID, JSON: body})
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(struct {
		TransferID string `json:"transferId"`
		Reply      any    `json:"reply"`
	}{*transferID, rep}, "", "  ")
	fmt.Println(string(out))
	return nil
}
