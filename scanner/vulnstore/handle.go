package vulnstore

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// Handle follows the live database of a state directory across swaps:
// the plugin holds one, the background updater swaps a new file in, and
// Reload moves readers to it. A Store in use is closed only when its last
// reader releases it.
type Handle struct {
	path string

	mu   sync.Mutex
	cur  *ref
	ino  uint64
	size int64
	// bad is the file that failed to open (by inode and size) and why:
	// it is not opened again until it changes.
	bad    [2]int64
	badErr error
}

type ref struct {
	s    *Store
	n    int
	dead bool
}

// NewHandle opens the database at path. A missing or corrupt database is
// not an error: a plugin must serve (on_error decides), and Acquire and
// Err report the problem until Reload finds a good file.
func NewHandle(path string) (*Handle, error) {
	h := &Handle{path: path}
	if _, err := h.Reload(); err != nil && !errors.Is(err, ErrNotExist) && !errors.Is(err, ErrCorrupt) {
		return nil, err
	}
	return h, nil
}

// Err says why no database is in use (nil when one is).
func (h *Handle) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.cur != nil:
		return nil
	case h.badErr != nil:
		return h.badErr
	}
	return fmt.Errorf("%w at %s: run `divds-authz db update`", ErrNotExist, h.path)
}

// Acquire returns the current Store and a release function, or an error
// when there is no database. Callers release as soon as they are done.
func (h *Handle) Acquire() (*Store, func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == nil {
		if h.badErr != nil {
			return nil, nil, h.badErr
		}
		return nil, nil, fmt.Errorf("%w at %s: run `divds-authz db update`", ErrNotExist, h.path)
	}
	r := h.cur
	r.n++
	var once sync.Once
	return r.s, func() { once.Do(func() { h.release(r) }) }, nil
}

func (h *Handle) release(r *ref) {
	h.mu.Lock()
	r.n--
	closeNow := r.dead && r.n == 0
	h.mu.Unlock()
	if closeNow {
		r.s.Close()
	}
}

// Reload opens the file at path if it is not the one in use (a writer
// swapped a new one in) and reports whether it changed.
func (h *Handle) Reload() (bool, error) {
	st, err := os.Stat(h.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("%w at %s", ErrNotExist, h.path)
		}
		return false, err
	}
	ino := uint64(0)
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = sys.Ino
	}
	h.mu.Lock()
	same := h.cur != nil && h.ino == ino && h.size == st.Size()
	knownBad := h.badErr != nil && h.bad == [2]int64{int64(ino), st.Size()}
	h.mu.Unlock()
	if same {
		return false, nil
	}
	if knownBad {
		// Reported when it was found; a new file is tried at once.
		return false, nil
	}
	s, err := Open(h.path)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			h.mu.Lock()
			h.bad, h.badErr = [2]int64{int64(ino), st.Size()}, err
			h.mu.Unlock()
		}
		return false, err
	}
	h.mu.Lock()
	h.badErr = nil
	old := h.cur
	h.cur, h.ino, h.size = &ref{s: s}, ino, st.Size()
	closeOld := false
	if old != nil {
		old.dead = true
		closeOld = old.n == 0
	}
	h.mu.Unlock()
	if closeOld {
		old.s.Close()
	}
	return true, nil
}

// Meta returns the current database's metadata, ok false when there is
// none.
func (h *Handle) Meta() (Meta, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == nil {
		return Meta{}, false
	}
	return h.cur.s.meta, true
}

// Close closes the current Store once its readers are done.
func (h *Handle) Close() {
	h.mu.Lock()
	r := h.cur
	h.cur = nil
	closeNow := false
	if r != nil {
		r.dead = true
		closeNow = r.n == 0
	}
	h.mu.Unlock()
	if closeNow {
		r.s.Close()
	}
}
