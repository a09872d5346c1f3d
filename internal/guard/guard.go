// Package guard runs third-party code on untrusted input so that a panic
// in it becomes an error.
//
// claircore's scanners, version parsers and enum decoders were written
// for a service that restarts; some of them panic on input they did not
// expect. DIVDS feeds them image content chosen by whoever built the
// image, inside a plugin that every docker command waits for, and in
// background goroutines where a panic would end the process. A panic
// there is a failed scan (which the policy's on_error decides), never a
// crash.
package guard

import (
	"fmt"
	"runtime/debug"
)

// PanicError is the error Run returns for a panic. Stack is kept for the
// debug log; Error() stays one line.
type PanicError struct {
	What  string
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("%s: internal error (panic: %v)", e.What, e.Value)
}

// Run calls fn and returns its error, or a *PanicError naming what if fn
// panics. A memory fault in fn (a read of a memory-mapped database file
// that was truncated or damaged under it) is a panic too, not the end of
// the process: it is turned into one for the calling goroutine.
func Run(what string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{What: what, Value: r, Stack: debug.Stack()}
		}
	}()
	return fn()
}
