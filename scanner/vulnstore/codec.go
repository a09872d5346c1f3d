package vulnstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unique"

	"github.com/quay/claircore"
)

// recordVersion is the first byte of every encoded vulnerability; a
// change of layout bumps it together with SchemaVersion.
const recordVersion = 1

// record is a vulnerability as stored: the large, repeated parts
// (description, links, package, distribution, repository, updater name)
// are references to interned blobs. Ubuntu's OVAL repeats one description
// for every binary package of a CVE; interning keeps the bionic data set
// at a fraction of its JSON size.
type record struct {
	Name           string
	Desc           uint64
	Issued         int64 // Unix nanoseconds; 0 for the zero time
	Links          uint64
	Severity       string
	NormSeverity   uint8
	Package        uint64
	Dist           uint64
	Repo           uint64
	FixedIn        string
	Range          *claircore.Range
	ArchOp         uint8
	Updater        uint64
	SelfSpace      string
	SelfName       string
	Aliases        []claircore.Alias
	Invert         bool
	PackageName    string // kept inline: the index and Get need them without a blob read
	PackageKind    string
	PackageVersion string
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendVersion(b []byte, v *claircore.Version) []byte {
	b = appendString(b, v.Kind)
	for _, x := range v.V {
		b = binary.AppendVarint(b, int64(x))
	}
	return b
}

func (r *record) encode(b []byte) []byte {
	b = append(b, recordVersion)
	b = appendString(b, r.Name)
	b = binary.AppendUvarint(b, r.Desc)
	b = binary.AppendVarint(b, r.Issued)
	b = binary.AppendUvarint(b, r.Links)
	b = appendString(b, r.Severity)
	b = append(b, r.NormSeverity)
	b = appendString(b, r.PackageName)
	b = appendString(b, r.PackageKind)
	b = appendString(b, r.PackageVersion)
	b = binary.AppendUvarint(b, r.Package)
	b = binary.AppendUvarint(b, r.Dist)
	b = binary.AppendUvarint(b, r.Repo)
	b = appendString(b, r.FixedIn)
	if r.Range != nil {
		b = append(b, 1)
		b = appendVersion(b, &r.Range.Lower)
		b = appendVersion(b, &r.Range.Upper)
	} else {
		b = append(b, 0)
	}
	b = append(b, r.ArchOp)
	b = binary.AppendUvarint(b, r.Updater)
	b = appendString(b, r.SelfSpace)
	b = appendString(b, r.SelfName)
	b = binary.AppendUvarint(b, uint64(len(r.Aliases)))
	for _, a := range r.Aliases {
		b = appendString(b, spaceValue(a.Space))
		b = appendString(b, a.Name)
	}
	if r.Invert {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return b
}

// decoder reads an encoded record. Every read is bounds-checked: a
// corrupted store gives an error, never a panic or a huge allocation.
type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated record")

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) byte() uint8 {
	if d.err != nil || len(d.b) < 1 {
		d.fail(errShort)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail(errShort)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) version(v *claircore.Version) {
	v.Kind = d.string()
	for i := range v.V {
		x := d.varint()
		if x < -1<<31 || x > 1<<31-1 {
			d.fail(fmt.Errorf("version component %d out of range", x))
		}
		v.V[i] = int32(x)
	}
}

func decodeRecord(b []byte) (*record, error) {
	d := &decoder{b: b}
	if v := d.byte(); d.err == nil && v != recordVersion {
		return nil, fmt.Errorf("record version %d, want %d", v, recordVersion)
	}
	r := &record{}
	r.Name = d.string()
	r.Desc = d.uvarint()
	r.Issued = d.varint()
	r.Links = d.uvarint()
	r.Severity = d.string()
	r.NormSeverity = d.byte()
	r.PackageName = d.string()
	r.PackageKind = d.string()
	r.PackageVersion = d.string()
	r.Package = d.uvarint()
	r.Dist = d.uvarint()
	r.Repo = d.uvarint()
	r.FixedIn = d.string()
	if d.byte() == 1 {
		r.Range = &claircore.Range{}
		d.version(&r.Range.Lower)
		d.version(&r.Range.Upper)
	}
	r.ArchOp = d.byte()
	r.Updater = d.uvarint()
	r.SelfSpace = d.string()
	r.SelfName = d.string()
	n := d.uvarint()
	if n > uint64(len(d.b)) { // each alias takes at least two bytes
		d.fail(errShort)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		space, name := d.string(), d.string()
		r.Aliases = append(r.Aliases, claircore.Alias{Space: internSpace(space), Name: name})
	}
	r.Invert = d.byte() == 1
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes after record", len(d.b))
	}
	return r, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func internSpace(s string) unique.Handle[string] { return unique.Make(s) }

// spaceValue is Handle.Value that tolerates the zero Handle, which
// Value would dereference.
func spaceValue(h unique.Handle[string]) string {
	if h == (unique.Handle[string]{}) {
		return ""
	}
	return h.Value()
}
