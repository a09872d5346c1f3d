package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/divds/divds/report"
	"github.com/divds/divds/scanner/index"
	"github.com/divds/divds/scanner/layerfs"
)

// Rootfs reads a root filesystem directory as a single layer.
type Rootfs struct {
	Dir string
}

// Describe implements Source.
func (r Rootfs) Describe() string { return "rootfs " + r.Dir }

// Read implements Source. The layer's ID is the digest of what was
// read, so it changes when the directory's packages change.
func (r Rootfs) Read(ctx context.Context, lim layerfs.Limits, _ Cached) (*Image, error) {
	abs, err := filepath.Abs(r.Dir)
	if err != nil {
		return nil, fmt.Errorf("rootfs %s: %w", r.Dir, err)
	}
	fs, err := layerfs.FromDir(ctx, abs, lim)
	if err != nil {
		return nil, fmt.Errorf("rootfs %s: %w", r.Dir, err)
	}
	id := contentDigest(fs)
	return &Image{
		Meta: report.Image{
			ID: id, Names: []string{abs}, Digests: []string{},
			Layers: []report.Layer{{DiffID: id, CreatedBy: "rootfs " + abs}},
		},
		Layers: []index.Layer{{DiffID: id, Files: fs}},
	}, nil
}

// contentDigest hashes a FileSet deterministically.
func contentDigest(fs *layerfs.FileSet) string {
	h := sha256.New()
	var names []string
	for p := range fs.Entries {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		e := fs.Entries[p]
		fmt.Fprintf(h, "%s\x00%d\x00%s\x00%d\x00", p, e.Kind, e.Target, len(e.Data))
		h.Write(e.Data)
	}
	for _, w := range fs.Whiteouts {
		fmt.Fprintf(h, "wh\x00%s\x00", w)
	}
	for _, o := range fs.Opaque {
		fmt.Fprintf(h, "opq\x00%s\x00", o)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
