// Package bundle reads and writes Clair air-gap bundles: the JSON lines
// that `clairctl export-updaters` writes (claircore's libvuln/jsonblob
// format), plain, gzip or zstd.
//
// It streams. claircore's jsonblob.Load hands over a whole update
// operation at once, and Ubuntu's OVAL makes one operation of 186,661
// records (285 MB of JSON for bionic alone); reading line by line keeps
// an import's memory flat whatever the bundle's size.
package bundle

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"
	"github.com/quay/claircore"
	"github.com/quay/claircore/libvuln/driver"

	"github.com/divds/divds/internal/safejson"
	"github.com/divds/divds/scanner/vulnstore"
)

// entry is one line: jsonblob's diskEntry.
type entry struct {
	Updater     string
	Fingerprint driver.Fingerprint
	Date        time.Time
	Ref         uuid.UUID
	Vuln        *claircore.Vulnerability `json:",omitempty"`
	Enrichment  *driver.EnrichmentRecord `json:",omitempty"`
	Kind        driver.UpdateKind
}

// Options bound an import.
type Options struct {
	// MaxLine is the longest line accepted. Default 16 MiB.
	MaxLine int
	// MaxBytes bounds the decompressed size, against compression bombs.
	// Default 16 GiB (every default updater's data is well under that).
	MaxBytes int64
	// Progress, when set, is called after every 10,000 records.
	Progress func(records int)
}

func (o *Options) defaults() {
	if o.MaxLine == 0 {
		o.MaxLine = 16 << 20
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 16 << 30
	}
}

// Summary counts what an import read.
type Summary struct {
	Updaters map[string]int
	Records  int
}

var (
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicGzip = []byte{0x1f, 0x8b}
)

// Decompress tells plain, gzip and zstd apart by their magic bytes.
func Decompress(r io.Reader) (io.ReadCloser, string, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, "", fmt.Errorf("read bundle: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, magicZstd):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return nil, "", fmt.Errorf("read zstd bundle: %w", err)
		}
		return zr.IOReadCloser(), "zstd", nil
	case bytes.HasPrefix(head, magicGzip):
		gr, err := gzip.NewReader(br)
		if err != nil {
			return nil, "", fmt.Errorf("read gzip bundle: %w", err)
		}
		return gr, "gzip", nil
	}
	return io.NopCloser(br), "plain", nil
}

// Import reads a bundle into b: each update operation in it replaces the
// data of its updater. Any error leaves b to be aborted; the caller's
// previous database is untouched.
func Import(ctx context.Context, b *vulnstore.Builder, r io.Reader, opts Options) (Summary, error) {
	opts.defaults()
	sum := Summary{Updaters: map[string]int{}}
	rc, format, err := Decompress(r)
	if err != nil {
		return sum, err
	}
	defer rc.Close()
	lr := &limitedReader{r: rc, n: opts.MaxBytes}
	br := bufio.NewReaderSize(lr, 1<<20)
	var (
		cur     uuid.UUID
		curName string
		open    bool
		line    int
		refs    = map[uuid.UUID]bool{}
	)
	for {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		raw, err := readLine(br, opts.MaxLine)
		if errors.Is(err, io.EOF) {
			break
		}
		line++
		if err != nil {
			return sum, fmt.Errorf("%s bundle line %d: %w", format, line, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		var e entry
		if err := safejson.Unmarshal(raw, &e); err != nil {
			return sum, fmt.Errorf("%s bundle line %d: not a jsonblob record: %w", format, line, err)
		}
		if e.Updater == "" || e.Ref == uuid.Nil {
			return sum, fmt.Errorf("%s bundle line %d: record has no Updater or Ref: not a clairctl export-updaters bundle", format, line)
		}
		if e.Ref != cur {
			if open {
				if err := b.FinishUpdater(); err != nil {
					return sum, err
				}
				open = false
			}
			if refs[e.Ref] {
				return sum, fmt.Errorf("%s bundle line %d: update operation %s resumes after another one: the bundle is corrupted", format, line, e.Ref)
			}
			refs[e.Ref] = true
			if _, dup := sum.Updaters[e.Updater]; dup {
				return sum, fmt.Errorf("%s bundle line %d: a second update operation for updater %s", format, line, e.Updater)
			}
			kind := vulnstore.KindVulnerability
			if e.Kind == driver.EnrichmentKind {
				kind = vulnstore.KindEnrichment
			}
			if err := b.StartUpdater(e.Updater, kind, e.Fingerprint, e.Date); err != nil {
				return sum, fmt.Errorf("%s bundle line %d: %w", format, line, err)
			}
			cur, curName, open = e.Ref, e.Updater, true
			sum.Updaters[e.Updater] = 0
		}
		if e.Updater != curName {
			return sum, fmt.Errorf("%s bundle line %d: updater %s inside the operation of %s", format, line, e.Updater, curName)
		}
		switch e.Kind {
		case driver.VulnerabilityKind:
			if e.Vuln == nil {
				return sum, fmt.Errorf("%s bundle line %d: vulnerability record without Vuln", format, line)
			}
			err = b.AddVulnerability(e.Vuln)
		case driver.EnrichmentKind:
			if e.Enrichment == nil {
				return sum, fmt.Errorf("%s bundle line %d: enrichment record without Enrichment", format, line)
			}
			err = b.AddEnrichment(*e.Enrichment)
		default:
			return sum, fmt.Errorf("%s bundle line %d: unknown record kind %q", format, line, e.Kind)
		}
		if err != nil {
			return sum, fmt.Errorf("%s bundle line %d: %w", format, line, err)
		}
		sum.Updaters[e.Updater]++
		sum.Records++
		if opts.Progress != nil && sum.Records%10000 == 0 {
			opts.Progress(sum.Records)
		}
	}
	if open {
		if err := b.FinishUpdater(); err != nil {
			return sum, err
		}
	}
	if line == 0 {
		return sum, fmt.Errorf("%s bundle is empty", format)
	}
	return sum, nil
}

// readLine returns one line without its newline, refusing longer lines
// than max rather than buffering them.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > max {
			return nil, fmt.Errorf("line longer than %d bytes", max)
		}
		switch {
		case err == nil:
			if buf == nil {
				return chunk[:len(chunk)-1], nil
			}
			return append(buf, chunk[:len(chunk)-1]...), nil
		case errors.Is(err, bufio.ErrBufferFull):
			buf = append(buf, chunk...)
		case errors.Is(err, io.EOF):
			if len(buf)+len(chunk) == 0 {
				return nil, io.EOF
			}
			// The last line need not end with a newline.
			return append(buf, chunk...), nil
		default:
			return nil, err
		}
	}
}

type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("bundle decompresses to more than the allowed size")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// Export writes every updater of s as a bundle that `db import` and
// claircore's jsonblob.Load read. The compression is the caller's.
func Export(ctx context.Context, s *vulnstore.Store, w io.Writer) (Summary, error) {
	sum := Summary{Updaters: map[string]int{}}
	infos, err := s.Updaters()
	if err != nil {
		return sum, err
	}
	byName := map[string]vulnstore.UpdaterInfo{}
	for _, u := range infos {
		byName[u.Name] = u
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	refs := map[string]uuid.UUID{}
	ref := func(name string) uuid.UUID {
		id, ok := refs[name]
		if !ok {
			id = uuid.New()
			refs[name] = id
		}
		return id
	}
	err = s.EachVulnerability(ctx, func(name string, v *claircore.Vulnerability) error {
		u := byName[name]
		v.ID = "" // store-local; clairctl writes none
		sum.Updaters[name]++
		sum.Records++
		return enc.Encode(&entry{Updater: name, Fingerprint: u.Fingerprint, Date: u.UpdatedAt, Ref: ref(name), Vuln: v, Kind: driver.VulnerabilityKind})
	})
	if err != nil {
		return sum, fmt.Errorf("export: %w", err)
	}
	err = s.EachEnrichment(ctx, func(name string, rec driver.EnrichmentRecord) error {
		u := byName[name]
		sum.Updaters[name]++
		sum.Records++
		return enc.Encode(&entry{Updater: name, Fingerprint: u.Fingerprint, Date: u.UpdatedAt, Ref: ref(name), Enrichment: &rec, Kind: driver.EnrichmentKind})
	})
	if err != nil {
		return sum, fmt.Errorf("export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return sum, fmt.Errorf("export: %w", err)
	}
	return sum, nil
}
