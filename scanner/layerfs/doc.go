// Package layerfs reduces an image layer to the few files that package
// and distribution scanners read, and merges layers into the image's
// final view of those files.
//
// A layer is never unpacked or turned whole into a tar. Each source (a
// layer directory of overlay2, a tar stream from `docker save` or a
// registry) yields a FileSet: the wanted files' contents, the symlinks on
// their paths, and the layer's whiteouts. Everything read is bounded. A
// link is never followed outside a layer: directory reads go through
// openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, and symlinks are
// resolved later, inside the merged set of recorded paths only, so a link
// to /etc/shadow or ../../host can only name another recorded image path.
package layerfs
