package layerfs

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"path"
	"sort"
	"strings"
	"time"
)

// View is the merged state of the wanted paths after some layers, as
// overlayfs would present them.
type View struct {
	nodes map[string]Entry
}

// NewView returns the view of an empty image.
func NewView() *View { return &View{nodes: map[string]Entry{}} }

// Clone copies the view; entries' data are shared, never mutated.
func (v *View) Clone() *View {
	n := &View{nodes: make(map[string]Entry, len(v.nodes))}
	for k, e := range v.nodes {
		n.nodes[k] = e
	}
	return n
}

func (v *View) deleteTree(p string) {
	if p == "" {
		clear(v.nodes)
		return
	}
	delete(v.nodes, p)
	prefix := p + "/"
	for k := range v.nodes {
		if strings.HasPrefix(k, prefix) {
			delete(v.nodes, k)
		}
	}
}

// Apply lays a layer over the view: its opaque directories and
// whiteouts hide what is below, then its entries are added.
func (v *View) Apply(fs *FileSet) {
	for _, o := range fs.Opaque {
		if o == "" {
			clear(v.nodes)
			continue
		}
		prefix := o + "/"
		for k := range v.nodes {
			if strings.HasPrefix(k, prefix) {
				delete(v.nodes, k)
			}
		}
	}
	for _, w := range fs.Whiteouts {
		v.deleteTree(w)
	}
	paths := make([]string, 0, len(fs.Entries))
	for p := range fs.Entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		e := fs.Entries[p]
		if old, ok := v.nodes[p]; ok && old.Kind == Dir && e.Kind == Dir {
			continue
		}
		if e.Kind != Dir {
			v.deleteTree(p) // a file or link replacing a directory hides its contents
		}
		v.nodes[p] = e
	}
}

// maxHops bounds symlink resolution, as the kernel's 40.
const maxHops = 40

// resolve follows symlinks inside the view. Absolute targets and ".."
// stay inside the image's root, as in a chroot. It returns the resolved
// path and its entry; ok is false when the path is missing, loops, or
// ends anywhere but at a recorded entry. A missing intermediate
// component is taken as a plain directory: archives may omit directory
// entries.
func (v *View) resolve(p string) (string, Entry, bool) {
	segs := strings.Split(p, "/")
	cur := ""
	hops := 0
	for i := 0; i < len(segs); i++ {
		next := path.Join(cur, segs[i])
		e, ok := v.nodes[next]
		last := i == len(segs)-1
		if !ok {
			if last {
				if v.hasChildren(next) {
					return next, Entry{Kind: Dir}, true // archives may omit directory entries
				}
				return "", Entry{}, false
			}
			cur = next
			continue
		}
		switch e.Kind {
		case Symlink:
			hops++
			if hops > maxHops {
				return "", Entry{}, false
			}
			base := path.Dir(next)
			if strings.HasPrefix(e.Target, "/") {
				base = ""
			}
			target := strings.TrimPrefix(path.Clean("/"+path.Join(base, e.Target)), "/")
			rest := append(strings.Split(target, "/"), segs[i+1:]...)
			if target == "" {
				rest = segs[i+1:]
			}
			segs, i, cur = rest, -1, ""
			if len(segs) == 0 {
				return "", Entry{}, false // the root itself
			}
		case File:
			if !last {
				return "", Entry{}, false
			}
			return next, e, true
		case Dir:
			if last {
				return next, e, true
			}
			cur = next
		}
	}
	return "", Entry{}, false
}

func (v *View) hasChildren(p string) bool {
	prefix := p + "/"
	for k := range v.nodes {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// Files returns the wanted files as the image presents them, keyed by
// their wanted path (symlinks resolved inside the image).
func (v *View) Files() map[string][]byte {
	out := map[string][]byte{}
	files, dirs := AllWanted()
	for _, f := range files {
		if _, e, ok := v.resolve(f); ok && e.Kind == File {
			out[f] = e.Data
		}
	}
	for _, d := range dirs {
		if !readsChildren(d) {
			continue // a marker directory: its recorded children are no input
		}
		real, e, ok := v.resolve(d)
		if !ok || e.Kind != Dir {
			continue
		}
		prefix := real + "/"
		for k := range v.nodes {
			if !strings.HasPrefix(k, prefix) || strings.Contains(k[len(prefix):], "/") {
				continue
			}
			if _, e, ok := v.resolve(k); ok && e.Kind == File {
				out[path.Join(d, k[len(prefix):])] = e.Data
			}
		}
	}
	return out
}

// HasFile reports whether the image presents a file at p.
func (v *View) HasFile(p string) bool {
	_, e, ok := v.resolve(p)
	return ok && e.Kind == File
}

// DpkgStatus is where dpkg keeps its database.
const DpkgStatus = "var/lib/dpkg/status"

// Tar renders the wanted files as a small uncompressed tar for
// claircore's scanners, with its digest. Two fixes are applied on the
// way: var/lib/dpkg/info is created beside a dpkg status (claircore's
// dpkg scanner looks for both), and a status file is made to end with
// the blank line dpkg writes (claircore's parser silently drops the last
// package without it).
func Tar(files map[string][]byte) ([]byte, string) {
	if data, ok := files[DpkgStatus]; ok {
		files[DpkgStatus] = terminateStanzas(data)
	}
	dirs := map[string]bool{}
	var names []string
	for p := range files {
		names = append(names, p)
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	if _, ok := files[DpkgStatus]; ok {
		for d := "var/lib/dpkg/info"; d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var dirNames []string
	for d := range dirs {
		dirNames = append(dirNames, d)
	}
	sort.Strings(dirNames)
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, d := range dirNames {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: epoch})
	}
	for _, p := range names {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: 0o644, Size: int64(len(files[p])), ModTime: epoch})
		tw.Write(files[p])
	}
	tw.Close() // writes to a bytes.Buffer cannot fail
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), "sha256:" + hex.EncodeToString(sum[:])
}

func terminateStanzas(data []byte) []byte {
	switch {
	case len(bytes.TrimSpace(data)) == 0, bytes.HasSuffix(data, []byte("\n\n")):
		return data
	case bytes.HasSuffix(data, []byte("\n")):
		return append(append([]byte(nil), data...), '\n')
	}
	return append(append([]byte(nil), data...), '\n', '\n')
}
