// Package source reads images from where they live (the local Docker
// daemon, a `docker save` archive, a root filesystem directory, a
// registry) into their metadata and, per layer, the wanted files.
package source

import (
	"context"

	"github.com/divds/divds/report"
	"github.com/divds/divds/scanner/index"
	"github.com/divds/divds/scanner/layerfs"
)

// Image is an image as read: the design's Table 1 metadata, and each
// layer's wanted files, bottom first.
type Image struct {
	Meta   report.Image
	Layers []index.Layer
	// Warnings say what the source could not do as asked (a fallback
	// taken, a second image in an archive ignored).
	Warnings []string
	// Unverified is set when layer contents were not checked against
	// their diff IDs: such results must not be cached under those IDs,
	// or a crafted archive could poison what later scans of a real image
	// with the same IDs read.
	Unverified bool
}

// Cached looks up a layer's FileSet by diff ID; nil when not cached.
// Sources that can skip reading a layer (a directory, a registry blob)
// do so when it is cached.
type Cached func(diffID string) *layerfs.FileSet

// Source reads one image.
type Source interface {
	// Read returns the image. lim bounds every read of image content.
	Read(ctx context.Context, lim layerfs.Limits, cached Cached) (*Image, error)
	// Describe names the source for messages ("rootfs /srv/root").
	Describe() string
}
