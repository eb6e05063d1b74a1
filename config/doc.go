// Package config binds a program's settings to command-line flags and
// environment variables under one naming scheme: the flag --commit-interval
// is also the variable KCQRS_COMMIT_INTERVAL. A flag given on the command
// line wins over the variable, which wins over the default. Every bad value
// is reported, not just the first, and the same bindings render the help
// text and the README's configuration table, so the three cannot drift.
//
// It also holds the settings shared by every kcqrs binary: the Kafka
// connection (brokers, TLS, SASL) and logging.
package config
