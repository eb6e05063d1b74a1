package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/wire"
)

// Exit codes of kcqrs. send and transfer end with the code of the reply's
// status, so that a script can tell an answer from a failure to get one.
const (
	exitOK             = 0 // ACCEPTED (a duplicate of an accepted command too); a transfer completed
	exitFailed         = 1 // no answer: Kafka unreachable, timeout, an undecodable reply
	exitUsage          = 2 // invalid flags or arguments
	exitRejected       = 3 // REJECTED by the domain (the reply's code says why)
	exitConflict       = 4 // CONFLICT: the expected version did not match
	exitInvalid        = 5 // INVALID: the command could not be read (bad header, JSON, type)
	exitExpired        = 6 // EXPIRED: the deadline had passed
	exitWrongPartition = 7 // WRONG_PARTITION: the key was sent to another partition than murmur2 picks
	exitInternalError  = 8 // INTERNAL_ERROR: the handler failed
	exitRefunded       = 9 // transfer --wait: the transfer was refunded
)

// exitCodes documents the exit codes in every command's help.
const exitCodes = `Exit codes: 0 ACCEPTED (or a transfer completed), 1 no answer (unreachable,
timeout), 2 usage, 3 REJECTED, 4 CONFLICT, 5 INVALID, 6 EXPIRED,
7 WRONG_PARTITION, 8 INTERNAL_ERROR, 9 transfer refunded (--wait).`

// exitError ends kcqrs with code; err (if any) is printed on stderr.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// statusExit is the exit code of a reply status.
func statusExit(s wire.Status) int {
	switch s {
	case wire.StatusAccepted:
		return exitOK
	case wire.StatusRejected:
		return exitRejected
	case wire.StatusConflict:
		return exitConflict
	case wire.StatusInvalid:
		return exitInvalid
	case wire.StatusExpired:
		return exitExpired
	case wire.StatusWrongPartition:
		return exitWrongPartition
	}
	return exitInternalError
}

// exitCode is the code main exits with for err.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return exitFailed
	}
	return exitOK
}

// cli is the settings of one subcommand: the Kafka connection the processor
// and the projector take (--brokers, TLS, SASL, with their KCQRS_*
// variables), then the subcommand's own.
type cli struct {
	*config.Set
	name  string
	kafka config.Kafka
}

// newCLI starts the settings of `kcqrs name`.
func newCLI(name, intro string) *cli {
	c := &cli{Set: config.New("kcqrs "+name, ""), name: name}
	c.Intro(intro)
	c.kafka.Bind(c.Set, []string{"127.0.0.1:9092"})
	return c
}

// parse reads the environment and args. It takes no positional arguments:
// every input is a flag. Help and invalid settings come back as exitErrors
// (0 with the help printed, 2 with every problem listed).
func (c *cli) parse(args []string) error {
	err := c.Parse(args, nil)
	if errors.Is(err, config.ErrHelp) {
		c.Usage(os.Stdout)
		return &exitError{code: exitOK}
	}
	errs := []error{err}
	if rest := c.Args(); len(rest) > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q: every input is a flag (kcqrs %s --help)", rest, c.name))
	}
	errs = append(errs, c.kafka.Validate())
	if err := errors.Join(errs...); err != nil {
		return c.usageError(err)
	}
	return nil
}

// usageError is err as an invalid-configuration exit.
func (c *cli) usageError(err error) error {
	problems := "  - " + strings.Join(strings.Split(err.Error(), "\n"), "\n  - ")
	return &exitError{code: exitUsage, err: fmt.Errorf("%s: invalid configuration:\n%s\n\nRun 'kcqrs %s --help' for the settings", c.name, problems, c.name)}
}

// clientOpts are the connection's franz-go options, seed brokers included.
func (c *cli) clientOpts() ([]kgo.Opt, error) {
	return c.kafka.Opts()
}

// admin opens a client and its admin client on the connection.
func (c *cli) admin() (*kgo.Client, *kadm.Client, error) {
	opts, err := c.clientOpts()
	if err != nil {
		return nil, nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, err
	}
	return cl, kadm.NewClient(cl), nil
}
