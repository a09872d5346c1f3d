// Package safejson decodes JSON that may hold claircore types from input
// the program does not trust: bundles, scan caches and database blobs.
//
// Several claircore enums (PackageKind, ArchOp, Severity) find their name
// with bytes.Index and panic("unreachable") when the text is a substring
// that does not start a name, such as a package kind of "ource". A
// malformed bundle must be an error that names the line, never a crash of
// the plugin every docker command waits for.
package safejson

import (
	"encoding/json"

	"github.com/divds/divds/internal/guard"
)

// Unmarshal is json.Unmarshal that turns a panic inside a field's
// UnmarshalText or UnmarshalJSON into an error.
func Unmarshal(data []byte, v any) error {
	return guard.Run("malformed field value", func() error { return json.Unmarshal(data, v) })
}
