package layerfs

import (
	"fmt"
	"path"
	"sort"
)

// Limits bound what is read from one image. The zero value takes the
// defaults.
type Limits struct {
	// MaxFile is the largest file read of rpm's database directories.
	// Default 256 MiB (an RPM database of a large RHEL image is tens of
	// MB).
	MaxFile int64
	// MaxText is the largest of every other wanted file: the text package
	// databases (dpkg status, apk installed) and release files. Default
	// 32 MiB: real ones are 1 to 5 MB, and parsing a hostile 200 MB one
	// took 2.4 GB of memory.
	MaxText int64
	// MaxTotal bounds all wanted files of one layer together. Default 512 MiB.
	MaxTotal int64
	// MaxEntries bounds the entries of one tar layer (headers read).
	// Default 10 million.
	MaxEntries int
	// MaxHeader bounds one tar header (names, PAX records). Default 1 MiB.
	MaxHeader int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxFile == 0 {
		l.MaxFile = 256 << 20
	}
	if l.MaxText == 0 {
		l.MaxText = 32 << 20
	}
	if l.MaxTotal == 0 {
		l.MaxTotal = 512 << 20
	}
	if l.MaxEntries == 0 {
		l.MaxEntries = 10_000_000
	}
	if l.MaxHeader == 0 {
		l.MaxHeader = 1 << 20
	}
	return l
}

// maxFor is the size limit of the wanted file p.
func (l Limits) maxFor(p string) int64 {
	if d := path.Dir(p); d == "var/lib/rpm" || d == "usr/lib/sysimage/rpm" {
		return l.MaxFile
	}
	return min(l.MaxText, l.MaxFile)
}

// Kind is the kind of an entry.
type Kind uint8

// Entry kinds.
const (
	File Kind = iota + 1
	Dir
	Symlink
)

// Entry is one recorded path of a layer.
type Entry struct {
	Kind   Kind   `json:"k"`
	Data   []byte `json:"d,omitempty"`
	Target string `json:"t,omitempty"` // symlink target, as written
}

// FileSet is what a layer contributes to the wanted paths.
type FileSet struct {
	// Entries maps clean relative paths to what the layer holds there.
	Entries map[string]Entry `json:"entries"`
	// Whiteouts are paths the layer deletes (with everything below).
	Whiteouts []string `json:"whiteouts,omitempty"`
	// Opaque are directories whose lower contents the layer hides.
	Opaque []string `json:"opaque,omitempty"`
	// Skipped notes what was passed over and why (devices, hardlinks
	// out of the layer), for the report's warnings.
	Skipped []string `json:"skipped,omitempty"`
	total   int64
}

// NewFileSet returns an empty set.
func NewFileSet() *FileSet { return &FileSet{Entries: map[string]Entry{}} }

// Empty reports whether the layer touches no wanted path.
func (f *FileSet) Empty() bool {
	return len(f.Entries) == 0 && len(f.Whiteouts) == 0 && len(f.Opaque) == 0
}

func (f *FileSet) addFile(p string, data []byte, lim Limits) error {
	f.total += int64(len(data))
	if f.total > lim.MaxTotal {
		return fmt.Errorf("wanted files of one layer exceed %d bytes", lim.MaxTotal)
	}
	f.Entries[p] = Entry{Kind: File, Data: data}
	return nil
}

func (f *FileSet) sort() {
	sort.Strings(f.Whiteouts)
	sort.Strings(f.Opaque)
	sort.Strings(f.Skipped)
}
