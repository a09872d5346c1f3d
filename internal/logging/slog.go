// Package logging bridges claircore's log/slog output into logrus, the
// logger DIVDS uses, so that one --log-level and one format govern both.
package logging

import (
	"context"
	"log/slog"

	"github.com/sirupsen/logrus"
)

// Handler is a slog.Handler writing to a logrus logger. claircore logs
// its routine progress ("parse start") at Info; the bridge lowers each
// level by one step (Info to Debug, Warn to Info) so that an admin's
// terminal shows DIVDS's own messages by default and claircore's with
// --log-level debug. Errors stay errors.
type Handler struct {
	log    *logrus.Logger
	attrs  []slog.Attr
	groups []string
}

// NewHandler returns a bridge to log.
func NewHandler(log *logrus.Logger) *Handler { return &Handler{log: log} }

func (h *Handler) level(l slog.Level) logrus.Level {
	switch {
	case l >= slog.LevelError:
		return logrus.ErrorLevel
	case l >= slog.LevelWarn:
		return logrus.InfoLevel
	case l >= slog.LevelInfo:
		return logrus.DebugLevel
	default:
		return logrus.TraceLevel
	}
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.IsLevelEnabled(h.level(l))
}

// Handle implements slog.Handler.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	fields := logrus.Fields{}
	prefix := ""
	for _, g := range h.groups {
		prefix += g + "."
	}
	add := func(a slog.Attr) bool {
		if a.Key != "" {
			fields[prefix+a.Key] = a.Value.Resolve().Any()
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	fields["component"] = "claircore"
	h.log.WithFields(fields).WithTime(r.Time).Log(h.level(r.Level), r.Message)
	return nil
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr{}, h.attrs...), attrs...)
	return &n
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	n := *h
	n.groups = append(append([]string{}, h.groups...), name)
	return &n
}
