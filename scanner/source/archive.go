package source

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/divds/divds/report"
	"github.com/divds/divds/scanner/index"
	"github.com/divds/divds/scanner/layerfs"
)

// Archive reads a `docker save` archive file, plain or gzip.
type Archive struct {
	Path string
	// Image selects one image of a multi-image archive by a RepoTag;
	// empty takes the first.
	Image string
}

// Describe implements Source.
func (a Archive) Describe() string { return "archive " + a.Path }

// Read implements Source. A plain (uncompressed) archive file is read by
// seeking: only tar headers and the wanted files are read, not the
// layers' contents, which makes it several times faster; its layers are
// then not re-hashed against their diff IDs, so the image is marked
// unverified and its results are not cached. A gzip archive is streamed
// and verified.
func (a Archive) Read(ctx context.Context, lim layerfs.Limits, cached Cached) (*Image, error) {
	f, err := os.Open(a.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := make([]byte, 4)
	n, _ := f.ReadAt(head, 0)
	if n == 4 && !bytes.HasPrefix(head, []byte{0x1f, 0x8b}) && !bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		return readArchiveFile(ctx, f, a.Image, lim)
	}
	return ReadArchive(ctx, f, a.Image, lim)
}

// readArchiveFile reads a plain archive file, seeking past what it does
// not need.
func readArchiveFile(ctx context.Context, f *os.File, want string, lim layerfs.Limits) (*Image, error) {
	tr := tar.NewReader(f) // f seeks: Next skips entry data without reading it
	return walkArchive(ctx, tr, want, func(hdr *tar.Header, name string) (entryReader, []byte, error) {
		// archive/tar reads whole blocks and no further: the file offset
		// is where this entry's data starts.
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, nil, fmt.Errorf("archive: %w", err)
		}
		sec := io.NewSectionReader(f, off, hdr.Size)
		first := make([]byte, 4)
		k, _ := sec.ReadAt(first, 0)
		return sec, first[:k], nil
	}, func(ctx context.Context, r entryReader, first []byte) (*archLayer, error) {
		if bytes.HasPrefix(first, []byte{0x1f, 0x8b}) || bytes.HasPrefix(first, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
			return readLayerBlob(ctx, r, lim) // compressed: stream it
		}
		fs, err := layerfs.FromTar(ctx, r, lim)
		return &archLayer{fs: fs, unverified: true}, err
	})
}

// entryReader reads one entry's data.
type entryReader = io.Reader

// walkArchive is the one pass over an outer archive both readers share:
// it bounds the entries, records links, reads metadata (bounded) and hands
// each possible layer to readLayer. open returns an entry's reader and its
// first bytes.
func walkArchive(ctx context.Context, tr *tar.Reader, want string,
	open func(hdr *tar.Header, name string) (entryReader, []byte, error),
	readLayer func(ctx context.Context, r entryReader, first []byte) (*archLayer, error)) (*Image, error) {
	jsons := map[string][]byte{}
	layers := map[string]*archLayer{}
	links := map[string]string{}
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if n > 1_000_000 {
			return nil, errors.New("archive has more than a million entries")
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
		name, regular, err := archiveEntry(hdr, links)
		if err != nil {
			return nil, err
		}
		if !regular {
			continue
		}
		r, first, err := open(hdr, name)
		if err != nil {
			return nil, err
		}
		switch {
		case isMetadata(name, first):
			if hdr.Size > maxJSON {
				return nil, fmt.Errorf("archive: %s is %d bytes, larger than the %d allowed for metadata", name, hdr.Size, maxJSON)
			}
			b, err := io.ReadAll(io.LimitReader(r, maxJSON))
			if err != nil {
				return nil, fmt.Errorf("archive: read %s: %w", name, err)
			}
			jsons[name] = b
		case isLayer(name):
			l, err := readLayer(ctx, r, first)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				// Only an error if the manifest uses it: OCI layouts keep
				// other blobs (attestations) too.
				l = &archLayer{err: err}
			}
			layers[name] = l
		}
		// Anything else (legacy VERSION files and the like) is skipped.
	}
	return assemble(jsons, layers, links, want)
}

// maxJSON bounds a manifest or image config inside an archive.
const maxJSON = 16 << 20

// maxStream bounds any decompressed stream (an archive, a layer), against
// compression bombs.
const maxStream = 64 << 30

type archLayer struct {
	err        error
	unverified bool // read by seeking: diff ID not computed
	diffID     string
	digest     string
	fs         *layerfs.FileSet
}

// ReadArchive reads a `docker save` stream in one pass: the daemon's
// ImageSave fallback streams through it without writing the image to
// disk. Layers may come before the manifest, so every layer blob is
// reduced to its FileSet and hashed as it passes; the manifest then
// orders them, and each computed diff ID must match the image config.
func ReadArchive(ctx context.Context, r io.Reader, want string, lim layerfs.Limits) (*Image, error) {
	in, err := decompress(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	defer in.Close()
	tr := tar.NewReader(&capped{r: in, n: maxStream})
	return walkArchive(ctx, tr, want, func(*tar.Header, string) (entryReader, []byte, error) {
		br := bufio.NewReaderSize(tr, 64<<10)
		head, _ := br.Peek(4)
		return br, head, nil
	}, func(ctx context.Context, r entryReader, _ []byte) (*archLayer, error) {
		return readLayerBlob(ctx, r, lim)
	})
}

// archiveEntry checks an entry of the outer archive: its clean name, and
// whether it is a regular file to look at. Links are recorded in links
// (docker save links duplicate layers); other entries are skipped.
func archiveEntry(hdr *tar.Header, links map[string]string) (string, bool, error) {
	name, ok := layerfs.Clean(hdr.Name)
	if !ok {
		return "", false, fmt.Errorf("archive entry %q climbs out of the archive", hdr.Name)
	}
	switch hdr.Typeflag {
	case tar.TypeSymlink, tar.TypeLink:
		target := hdr.Linkname
		if hdr.Typeflag == tar.TypeSymlink && !strings.HasPrefix(target, "/") {
			target = path.Join(path.Dir(name), target)
		}
		t, ok := layerfs.Clean(target)
		if !ok {
			return "", false, fmt.Errorf("archive link %q -> %q climbs out of the archive", hdr.Name, hdr.Linkname)
		}
		links[name] = t
		return name, false, nil
	case tar.TypeReg, tar.TypeRegA:
		return name, true, nil
	}
	return name, false, nil
}

// isMetadata tells the archive's JSON (manifests, configs) from layers.
func isMetadata(name string, first []byte) bool {
	return strings.HasSuffix(name, ".json") || name == "repositories" || name == "oci-layout" || (len(first) > 0 && first[0] == '{')
}

// isLayer names the entries that may be layers: legacy <id>/layer.tar and
// OCI blobs.
func isLayer(name string) bool {
	return strings.HasSuffix(name, "layer.tar") || strings.HasPrefix(name, "blobs/")
}

// readLayerBlob reduces one layer blob (plain, gzip or zstd tar) to its
// FileSet, hashing the blob (digest) and its tar stream (diff ID).
func readLayerBlob(ctx context.Context, r io.Reader, lim layerfs.Limits) (*archLayer, error) {
	blobHash := sha256.New()
	raw := bufio.NewReaderSize(io.TeeReader(r, blobHash), 64<<10)
	plain, err := decompress(raw)
	if err != nil {
		return nil, err
	}
	defer plain.Close()
	diffHash := sha256.New()
	tee := io.TeeReader(&capped{r: plain, n: maxStream}, diffHash)
	fs, err := layerfs.FromTar(ctx, tee, lim)
	if err != nil {
		return nil, err
	}
	// The tar end may be followed by padding: hash all of it.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return nil, err
	}
	return &archLayer{diffID: digestOf(diffHash), digest: digestOf(blobHash), fs: fs}, nil
}

func digestOf(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// decompress tells gzip and zstd from plain data by their magic bytes.
// A compressed stream is bounded by its ratio too (see bombGuard).
func decompress(br *bufio.Reader) (io.ReadCloser, error) {
	head, _ := br.Peek(4)
	in := &counting{r: br}
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(in)
		if err != nil {
			return nil, err
		}
		return newBombGuard(zr, in), nil
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return nil, err
		}
		return newBombGuard(zr.IOReadCloser(), in), nil
	}
	return io.NopCloser(br), nil
}

// Past bombFloor bytes, a decompressed stream may be at most bombRatio
// times the compressed bytes read so far. Real layers compress 2 to 10
// times; a compression bomb a thousand times (a 10 GiB gzip bomb cost 15
// to 33 s of CPU per scan). A layer of mostly zeros (a sparse disk image)
// can trip it too: it is then a scan error, which on_error decides.
const (
	bombFloor = 1 << 30
	bombRatio = 200
)

// counting counts the bytes read through it.
type counting struct {
	r io.Reader
	n int64
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// bombGuard fails a decompressed stream that outgrows its ratio bound.
// Closing it closes the decompressor (zstd's holds buffers until then).
type bombGuard struct {
	r            io.Reader
	in           *counting
	out          int64
	floor, ratio int64
}

func newBombGuard(r io.Reader, in *counting) *bombGuard {
	return &bombGuard{r: r, in: in, floor: bombFloor, ratio: bombRatio}
}

func (b *bombGuard) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.out += int64(n)
	if b.out > b.floor && b.out > b.in.n*b.ratio {
		return n, fmt.Errorf("the stream decompresses to %d bytes from %d, over %d times its size: refused as a compression bomb", b.out, b.in.n, b.ratio)
	}
	return n, err
}

func (b *bombGuard) Close() error {
	if c, ok := b.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// capped fails a read past n bytes.
type capped struct {
	r io.Reader
	n int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, fmt.Errorf("stream decompresses to more than %d bytes", int64(maxStream))
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

// imageConfig is what DIVDS reads of an image config.
type imageConfig struct {
	Created      *time.Time `json:"created"`
	OS           string     `json:"os"`
	Architecture string     `json:"architecture"`
	RootFS       struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []struct {
		CreatedBy  string `json:"created_by"`
		EmptyLayer bool   `json:"empty_layer"`
	} `json:"history"`
}

// createdBy lists the build command of each non-empty history entry,
// which correspond to the layers in order.
func (c *imageConfig) createdBy() []string {
	var out []string
	for _, h := range c.History {
		if !h.EmptyLayer {
			out = append(out, h.CreatedBy)
		}
	}
	if len(out) != len(c.RootFS.DiffIDs) {
		return nil
	}
	return out
}

func assemble(jsons map[string][]byte, layers map[string]*archLayer, links map[string]string, want string) (*Image, error) {
	raw, ok := jsons["manifest.json"]
	if !ok {
		return nil, errors.New("archive has no manifest.json: is it a `docker save` archive?")
	}
	var manifests []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(raw, &manifests); err != nil {
		return nil, fmt.Errorf("archive manifest.json: %w", err)
	}
	if len(manifests) == 0 {
		return nil, errors.New("archive manifest.json lists no image")
	}
	img := &Image{}
	m := manifests[0]
	if want != "" {
		found := false
		for _, cand := range manifests {
			for _, t := range cand.RepoTags {
				if t == want {
					m, found = cand, true
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("archive has no image tagged %s", want)
		}
	} else if len(manifests) > 1 {
		img.Warnings = append(img.Warnings, fmt.Sprintf("archive holds %d images; reading the first (%v)", len(manifests), m.RepoTags))
	}
	resolve := func(p string) string {
		for i := 0; i < 40; i++ {
			t, ok := links[p]
			if !ok {
				return p
			}
			p = t
		}
		return p
	}
	cfgName, _ := layerfs.Clean(m.Config)
	cfgRaw, ok := jsons[resolve(cfgName)]
	if !ok {
		return nil, fmt.Errorf("archive has no image config %s", m.Config)
	}
	var cfg imageConfig
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return nil, fmt.Errorf("archive image config: %w", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("archive: the manifest lists %d layers, the config %d", len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	sum := sha256.Sum256(cfgRaw)
	img.Meta = report.Image{
		ID: "sha256:" + hex.EncodeToString(sum[:]), Names: append([]string{}, m.RepoTags...), Digests: []string{},
		Created: cfg.Created, OS: cfg.OS, Architecture: cfg.Architecture,
	}
	cmds := cfg.createdBy()
	for i, lp := range m.Layers {
		name, _ := layerfs.Clean(lp)
		l, ok := layers[resolve(name)]
		if !ok {
			return nil, fmt.Errorf("archive: layer %s is missing", lp)
		}
		if l.err != nil {
			return nil, fmt.Errorf("archive: layer %s: %w", lp, l.err)
		}
		if l.unverified {
			l.diffID = cfg.RootFS.DiffIDs[i]
			img.Unverified = true
		}
		if l.diffID != cfg.RootFS.DiffIDs[i] {
			return nil, fmt.Errorf("archive: layer %d (%s) has content %s, but the image config says %s: the archive is corrupted", i+1, lp, l.diffID, cfg.RootFS.DiffIDs[i])
		}
		ml := report.Layer{Digest: l.digest, DiffID: l.diffID}
		if cmds != nil {
			ml.CreatedBy = cmds[i]
		}
		img.Meta.Layers = append(img.Meta.Layers, ml)
		img.Layers = append(img.Layers, index.Layer{DiffID: l.diffID, Files: l.fs})
	}
	return img, nil
}
