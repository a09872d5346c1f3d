package layerfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// FromTar reads an uncompressed layer tar stream and keeps what touches
// a wanted path. It reads the stream to its end (the caller may be
// hashing it). A path that climbs out of the layer, an oversized header
// or file, or too many entries is an error: such an archive is
// malicious or broken, and a gate must not guess about it.
func FromTar(ctx context.Context, r io.Reader, lim Limits) (*FileSet, error) {
	lim = lim.withDefaults()
	fs := NewFileSet()
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if n >= lim.MaxEntries {
			return nil, fmt.Errorf("layer has more than %d entries", lim.MaxEntries)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read layer tar: %w", err)
		}
		if int64(len(hdr.Name)+len(hdr.Linkname)) > lim.MaxHeader {
			return nil, fmt.Errorf("layer tar header for %.64q… is larger than %d bytes", hdr.Name, lim.MaxHeader)
		}
		name, ok := Clean(hdr.Name)
		if !ok {
			return nil, fmt.Errorf("layer tar entry %q climbs out of the layer", hdr.Name)
		}
		if err := fs.addTarEntry(tr, hdr, name, lim); err != nil {
			return nil, err
		}
	}
	fs.sort()
	return fs, nil
}

func (fs *FileSet) addTarEntry(tr *tar.Reader, hdr *tar.Header, name string, lim Limits) error {
	dir, base := path.Dir(name), path.Base(name)
	if dir == "." {
		dir = ""
	}
	switch {
	case base == opaqueMarker:
		if dir == "" || OnWantedPath(dir) {
			fs.Opaque = append(fs.Opaque, dir)
		}
		return nil
	case strings.HasPrefix(base, whiteoutPrefix):
		target := path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix))
		if OnWantedPath(target) || FileList(target) {
			fs.Whiteouts = append(fs.Whiteouts, target)
		}
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		if FileList(name) {
			fs.Entries[name] = Entry{Kind: File} // presence only
			return nil
		}
		if !Wanted(name) {
			return nil
		}
		if limit := lim.maxFor(name); hdr.Size > limit {
			return fmt.Errorf("%s is %d bytes, larger than the %d allowed", name, hdr.Size, limit)
		}
		data, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		return fs.addFile(name, data, lim)
	case tar.TypeDir:
		if OnWantedPath(name) {
			fs.Entries[name] = Entry{Kind: Dir}
		}
	case tar.TypeSymlink:
		if OnWantedPath(name) {
			fs.Entries[name] = Entry{Kind: Symlink, Target: hdr.Linkname}
		}
	case tar.TypeLink:
		target, ok := Clean(hdr.Linkname)
		if !ok {
			return fmt.Errorf("layer tar hardlink %q -> %q climbs out of the layer", hdr.Name, hdr.Linkname)
		}
		if !Wanted(name) {
			return nil
		}
		// A hardlink names an earlier entry of the same layer. Only a
		// wanted file was kept, so only such a target can be copied.
		if e, ok := fs.Entries[target]; ok && e.Kind == File {
			fs.Entries[name] = e
		} else {
			fs.Skipped = append(fs.Skipped, fmt.Sprintf("%s: hardlink to %s, which was not read", name, target))
		}
	default:
		if Wanted(name) {
			fs.Skipped = append(fs.Skipped, fmt.Sprintf("%s: not a regular file (type %q)", name, hdr.Typeflag))
		}
	}
	return nil
}
