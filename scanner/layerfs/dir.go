package layerfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// resolveFlags confine every lookup to the layer directory and refuse
// to cross any symlink: a link is recorded, never followed.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// FromDir reads the wanted paths of a layer directory, such as an
// overlay2 diff directory. overlay2 marks a deleted path with a 0/0
// character device and a directory hiding lower layers with the
// trusted.overlay.opaque (or user.overlay.opaque) attribute.
//
// A regular file with more than one link is refused: a hardlink could
// reach a file outside the layer, and package databases are never
// hardlinked.
func FromDir(ctx context.Context, root string, lim Limits) (*FileSet, error) {
	lim = lim.withDefaults()
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open layer directory %s: %w", root, err)
	}
	defer unix.Close(rootFD)
	d := &dirReader{root: root, fd: rootFD, lim: lim, fs: NewFileSet(), seen: map[string]bool{}}
	files, dirs := AllWanted()
	for _, p := range append(files, dirs...) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := d.walk(p); err != nil {
			return nil, err
		}
	}
	d.fs.sort()
	return d.fs, nil
}

type dirReader struct {
	root string
	fd   int
	lim  Limits
	fs   *FileSet
	seen map[string]bool
}

// walk visits each prefix of p in turn, stopping at the first that is
// missing, a symlink or a whiteout.
func (d *dirReader) walk(p string) error {
	segs := strings.Split(p, "/")
	for i := range segs {
		cur := strings.Join(segs[:i+1], "/")
		more, err := d.visit(cur, i == len(segs)-1)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

func (d *dirReader) visit(p string, last bool) (more bool, err error) {
	if d.seen[p] {
		e, ok := d.fs.Entries[p]
		return ok && e.Kind == Dir, nil
	}
	d.seen[p] = true
	fd, err := unix.Openat2(d.fd, p, &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolveFlags})
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return false, nil
	case errors.Is(err, unix.ENOSYS):
		return false, fmt.Errorf("openat2 is not available (Linux 5.6 or later is needed to read layer directories safely)")
	case err != nil:
		return false, fmt.Errorf("open %s in layer %s: %w", p, d.root, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, fmt.Errorf("stat %s in layer %s: %w", p, d.root, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		buf := make([]byte, 4096)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return false, fmt.Errorf("readlink %s in layer %s: %w", p, d.root, err)
		}
		d.fs.Entries[p] = Entry{Kind: Symlink, Target: string(buf[:n])}
		return false, nil
	case unix.S_IFCHR:
		if st.Rdev == 0 {
			d.fs.Whiteouts = append(d.fs.Whiteouts, p)
		} else if Wanted(p) {
			d.fs.Skipped = append(d.fs.Skipped, p+": a device")
		}
		return false, nil
	case unix.S_IFDIR:
		d.fs.Entries[p] = Entry{Kind: Dir}
		if opaque(fd) {
			d.fs.Opaque = append(d.fs.Opaque, p)
		}
		if last && readsChildren(p) {
			return false, d.readDir(p)
		}
		if last && p == dpkgInfo {
			return false, d.readFileLists(p)
		}
		return true, nil
	case unix.S_IFREG:
		if Wanted(p) {
			return false, d.readFile(p, &st)
		}
		return false, nil
	default:
		if Wanted(p) {
			d.fs.Skipped = append(d.fs.Skipped, p+": not a regular file")
		}
		return false, nil
	}
}

func opaque(pathFD int) bool {
	// getxattr needs a real path; /proc/self/fd names the O_PATH handle.
	p := fmt.Sprintf("/proc/self/fd/%d", pathFD)
	buf := make([]byte, 8)
	for _, attr := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		if n, err := unix.Getxattr(p, attr, buf); err == nil && n == 1 && buf[0] == 'y' {
			return true
		}
	}
	return false
}

// openDir opens the directory p inside the layer, never through a link.
func (d *dirReader) openDir(p string) (*os.File, error) {
	fd, err := unix.Openat2(d.fd, p, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolveFlags})
	if err != nil {
		return nil, fmt.Errorf("open %s in layer %s: %w", p, d.root, err)
	}
	return os.NewFile(uintptr(fd), p), nil
}

func (d *dirReader) readDir(p string) error {
	f, err := d.openDir(p)
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(10000)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("list %s in layer %s: %w", p, d.root, err)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := d.visit(path.Join(p, n), true); err != nil {
			return err
		}
	}
	return nil
}

func (d *dirReader) readFile(p string, st *unix.Stat_t) error {
	if st.Nlink > 1 {
		d.fs.Skipped = append(d.fs.Skipped, fmt.Sprintf("%s: has %d hardlinks; refused, a link could reach outside the layer", p, st.Nlink))
		return nil
	}
	limit := d.lim.maxFor(p)
	if st.Size > limit {
		return fmt.Errorf("%s in layer %s is %d bytes, larger than the %d allowed", p, d.root, st.Size, limit)
	}
	fd, err := unix.Openat2(d.fd, p, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC, Resolve: resolveFlags})
	if err != nil {
		return fmt.Errorf("open %s in layer %s: %w", p, d.root, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var st2 unix.Stat_t
	if err := unix.Fstat(fd, &st2); err != nil {
		return err
	}
	// The path may have been swapped since the first look.
	if st2.Mode&unix.S_IFMT != unix.S_IFREG || st2.Ino != st.Ino || st2.Nlink > 1 {
		return fmt.Errorf("%s in layer %s changed while it was read", p, d.root)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return fmt.Errorf("read %s in layer %s: %w", p, d.root, err)
	}
	if int64(len(data)) > limit {
		return fmt.Errorf("%s in layer %s grew past the %d bytes allowed", p, d.root, limit)
	}
	return d.fs.addFile(p, data, d.lim)
}

// readFileLists records which of dpkg's file lists the layer holds or
// deletes. The directory is listed with the types readdir gives, without
// a system call per file: a base layer holds thousands of them.
func (d *dirReader) readFileLists(p string) error {
	f, err := d.openDir(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fd := int(f.Fd())
	entries, err := f.ReadDir(d.lim.MaxEntries + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("list %s in layer %s: %w", p, d.root, err)
	}
	if len(entries) > d.lim.MaxEntries {
		return fmt.Errorf("%s in layer %s has more than %d entries", p, d.root, d.lim.MaxEntries)
	}
	for _, e := range entries {
		name := path.Join(p, e.Name())
		if !FileList(name) {
			continue
		}
		switch e.Type() {
		case 0: // a regular file
			d.fs.Entries[name] = Entry{Kind: File}
		case os.ModeDevice | os.ModeCharDevice, os.ModeIrregular:
			// overlay2's whiteout is a 0/0 character device.
			var st unix.Stat_t
			if err := unix.Fstatat(fd, e.Name(), &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
				d.fs.Whiteouts = append(d.fs.Whiteouts, name)
			} else if err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
				d.fs.Entries[name] = Entry{Kind: File}
			}
		}
	}
	return nil
}
