package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Log is how a kcqrs binary logs.
type Log struct {
	// Format is "text" or "json".
	Format string
	// Level is debug, info, warn or error.
	Level string
}

// Bind binds the log settings under the group "Logging".
func (l *Log) Bind(s *Set) {
	s.Group("Logging")
	s.String(&l.Format, "log-format", "text", "log format: text or json")
	s.String(&l.Level, "log-level", "info", "lowest level logged: debug, info, warn or error")
}

// Validate reports every problem at once.
func (l *Log) Validate() error {
	_, err := l.handlerOpts()
	return err
}

func (l *Log) handlerOpts() (*slog.HandlerOptions, error) {
	var level slog.Level
	var errs []error
	if err := level.UnmarshalText([]byte(l.Level)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.Level))
	}
	switch strings.ToLower(l.Format) {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", l.Format))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &slog.HandlerOptions{Level: level}, nil
}

// Logger returns a logger writing to w in the configured format.
func (l *Log) Logger(w io.Writer) (*slog.Logger, error) {
	o, err := l.handlerOpts()
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(l.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return slog.New(slog.NewTextHandler(w, o)), nil
}
