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
	"fmt"
)

// Unmarshal is json.Unmarshal that turns a panic inside a field's
// UnmarshalText or UnmarshalJSON into an error.
func Unmarshal(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed field value (the decoder rejected it: %v)", r)
		}
	}()
	return json.Unmarshal(data, v)
}
