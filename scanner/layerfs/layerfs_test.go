package layerfs

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

type tarEntry struct {
	name, body, link string
	typ              byte
}

func mkTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Linkname: e.link}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return buf.Bytes()
}

func fromTar(t *testing.T, entries ...tarEntry) *FileSet {
	t.Helper()
	fs, err := FromTar(context.Background(), bytes.NewReader(mkTar(t, entries...)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestViewLayering(t *testing.T) {
	status1 := "Package: a\nVersion: 1\n\n"
	status2 := "Package: b\nVersion: 2\n\n"
	tests := []struct {
		name   string
		layers [][]tarEntry
		want   map[string]string
	}{
		{"single", [][]tarEntry{{{name: "var/lib/dpkg/status", body: status1}}}, map[string]string{"var/lib/dpkg/status": status1}},
		{"replaced", [][]tarEntry{{{name: "var/lib/dpkg/status", body: status1}}, {{name: "var/lib/dpkg/status", body: status2}}},
			map[string]string{"var/lib/dpkg/status": status2}},
		{"whiteout", [][]tarEntry{{{name: "var/lib/dpkg/status", body: status1}}, {{name: "var/lib/dpkg/.wh.status"}}}, map[string]string{}},
		{"whiteout of a parent", [][]tarEntry{{{name: "var/lib/dpkg/status", body: status1}}, {{name: "var/lib/.wh.dpkg"}}}, map[string]string{}},
		{"opaque parent", [][]tarEntry{{{name: "var/lib/dpkg/status", body: status1}}, {{name: "var/lib/.wh..wh..opq"}}}, map[string]string{}},
		{"opaque then new", [][]tarEntry{{{name: "var/lib/dpkg/status", body: status1}},
			{{name: "var/lib/dpkg/.wh..wh..opq"}, {name: "var/lib/dpkg/status", body: status2}}}, map[string]string{"var/lib/dpkg/status": status2}},
		{"relative symlink", [][]tarEntry{{{name: "usr/lib/os-release", body: "ID=x\n"}, {name: "etc/os-release", typ: tar.TypeSymlink, link: "../usr/lib/os-release"}}},
			map[string]string{"etc/os-release": "ID=x\n", "usr/lib/os-release": "ID=x\n"}},
		{"absolute symlink stays in the image", [][]tarEntry{{{name: "usr/lib/os-release", body: "ID=x\n"}, {name: "etc/os-release", typ: tar.TypeSymlink, link: "/usr/lib/os-release"}}},
			map[string]string{"etc/os-release": "ID=x\n", "usr/lib/os-release": "ID=x\n"}},
		{"climbing symlink is clamped to the root", [][]tarEntry{{{name: "etc/os-release", typ: tar.TypeSymlink, link: "../../../../../usr/lib/os-release"}},
			{{name: "usr/lib/os-release", body: "ID=y\n"}}}, map[string]string{"etc/os-release": "ID=y\n", "usr/lib/os-release": "ID=y\n"}},
		{"symlink to a host file reads nothing", [][]tarEntry{{{name: "var/lib/dpkg/status", typ: tar.TypeSymlink, link: "/etc/shadow"}}}, map[string]string{}},
		{"symlinked directory across layers", [][]tarEntry{{{name: "usr/lib/sysimage/rpm/Packages", body: "db"}}, {{name: "var/lib/rpm", typ: tar.TypeSymlink, link: "../../usr/lib/sysimage/rpm"}}},
			map[string]string{"usr/lib/sysimage/rpm/Packages": "db", "var/lib/rpm/Packages": "db"}},
		{"symlink loop", [][]tarEntry{{{name: "etc/os-release", typ: tar.TypeSymlink, link: "os-release"}}}, map[string]string{}},
		{"hardlink to a wanted file", [][]tarEntry{{{name: "usr/lib/os-release", body: "ID=z\n"}, {name: "etc/os-release", typ: tar.TypeLink, link: "usr/lib/os-release"}}},
			map[string]string{"etc/os-release": "ID=z\n", "usr/lib/os-release": "ID=z\n"}},
		{"hardlink to an unread file", [][]tarEntry{{{name: "etc/passwd", body: "root"}, {name: "var/lib/dpkg/status", typ: tar.TypeLink, link: "etc/passwd"}}}, map[string]string{}},
		{"unwanted files ignored", [][]tarEntry{{{name: "etc/passwd", body: "root"}, {name: "bin/sh", body: "ELF"}}}, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewView()
			for _, l := range tt.layers {
				v.Apply(fromTar(t, l...))
			}
			got := map[string]string{}
			for k, b := range v.Files() {
				got[k] = string(b)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, w := range tt.want {
				if got[k] != w {
					t.Fatalf("%s = %q, want %q (all: %v)", k, got[k], w, got)
				}
			}
		})
	}
}

func TestTarRejects(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
		lim     Limits
		want    string
	}{
		{"path traversal", []tarEntry{{name: "../../etc/passwd", body: "x"}}, Limits{}, "climbs out"},
		{"nested traversal", []tarEntry{{name: "var/../../x", body: "x"}}, Limits{}, "climbs out"},
		{"hardlink traversal", []tarEntry{{name: "var/lib/dpkg/status", typ: tar.TypeLink, link: "../../../etc/shadow"}}, Limits{}, "climbs out"},
		{"file too large", []tarEntry{{name: "var/lib/dpkg/status", body: strings.Repeat("x", 2000)}}, Limits{MaxFile: 1000}, "larger than"},
		{"too many entries", []tarEntry{{name: "a"}, {name: "b"}, {name: "c"}}, Limits{MaxEntries: 2}, "more than 2 entries"},
		// A text package database over 32 MiB (real ones are 1 to 5 MB):
		// parsing a hostile 200 MB one took 2.4 GB.
		{"dpkg status over the text limit", []tarEntry{{name: "var/lib/dpkg/status", body: strings.Repeat("x", 32<<20+1)}}, Limits{}, "var/lib/dpkg/status is 33554433 bytes, larger than the 33554432 allowed"},
		{"apk database over the text limit", []tarEntry{{name: "lib/apk/db/installed", body: strings.Repeat("x", 2000)}}, Limits{MaxText: 1000}, "larger than the 1000 allowed"},
		{"huge header", []tarEntry{{name: "etc/" + strings.Repeat("x", 5000), typ: tar.TypeSymlink, link: strings.Repeat("y", 5000)}}, Limits{MaxHeader: 4096}, "header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromTar(context.Background(), bytes.NewReader(mkTar(t, tt.entries...)), tt.lim)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := FromTar(context.Background(), strings.NewReader("this is not a tar archive at all, but long enough to be read as a header block..."+strings.Repeat(" ", 512)), Limits{}); err == nil {
		t.Fatal("garbage accepted")
	}
}

// TestDirEscapes builds layer directories whose package database is a
// link to a canary file outside the layer: nothing outside is read.
func TestDirEscapes(t *testing.T) {
	outside := t.TempDir()
	canary := filepath.Join(outside, "canary")
	os.WriteFile(canary, []byte("Package: canary\nVersion: 6.6.6\n\n"), 0o644)

	tests := []struct {
		name  string
		setup func(root string) error
	}{
		{"absolute symlink", func(root string) error { return os.Symlink(canary, filepath.Join(root, "var/lib/dpkg/status")) }},
		{"relative symlink", func(root string) error {
			rel, _ := filepath.Rel(filepath.Join(root, "var/lib/dpkg"), canary)
			return os.Symlink(rel, filepath.Join(root, "var/lib/dpkg/status"))
		}},
		{"symlinked parent", func(root string) error {
			os.Remove(filepath.Join(root, "var/lib/dpkg"))
			os.MkdirAll(filepath.Join(outside, "dpkg"), 0o755)
			os.WriteFile(filepath.Join(outside, "dpkg/status"), []byte("Package: canary\n\n"), 0o644)
			return os.Symlink(filepath.Join(outside, "dpkg"), filepath.Join(root, "var/lib/dpkg"))
		}},
		{"hardlink", func(root string) error { return os.Link(canary, filepath.Join(root, "var/lib/dpkg/status")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755)
			if err := tt.setup(root); err != nil {
				t.Fatal(err)
			}
			fs, err := FromDir(context.Background(), root, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			v := NewView()
			v.Apply(fs)
			for p, b := range v.Files() {
				if bytes.Contains(b, []byte("canary")) {
					t.Fatalf("read the canary through %s", p)
				}
			}
			for _, e := range fs.Entries {
				if bytes.Contains(e.Data, []byte("canary")) {
					t.Fatal("the canary was read")
				}
			}
		})
	}
}

func TestDirWhiteoutsAndDevices(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test makes device nodes: run it as root (make test does)")
	}
	lower, upper := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(lower, "var/lib/dpkg"), 0o755)
	os.WriteFile(filepath.Join(lower, "var/lib/dpkg/status"), []byte("Package: a\n\n"), 0o644)
	os.MkdirAll(filepath.Join(upper, "var/lib/dpkg"), 0o755)
	// overlay2's whiteout: a 0/0 character device.
	if err := unix.Mknod(filepath.Join(upper, "var/lib/dpkg/status"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	// A FIFO where a database should be must not block the read.
	os.MkdirAll(filepath.Join(upper, "lib/apk/db"), 0o755)
	if err := unix.Mkfifo(filepath.Join(upper, "lib/apk/db/installed"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := NewView()
	for _, d := range []string{lower, upper} {
		fs, err := FromDir(context.Background(), d, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		v.Apply(fs)
	}
	if files := v.Files(); len(files) != 0 {
		t.Fatalf("whited-out or special files read: %v", files)
	}
	// The opaque attribute hides the lower directory.
	opq := t.TempDir()
	os.MkdirAll(filepath.Join(opq, "var/lib/dpkg"), 0o755)
	if err := unix.Setxattr(filepath.Join(opq, "var/lib"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Skipf("this filesystem takes no trusted xattrs: %v", err)
	}
	v = NewView()
	for _, d := range []string{lower, opq} {
		fs, _ := FromDir(context.Background(), d, Limits{})
		v.Apply(fs)
	}
	if files := v.Files(); len(files) != 0 {
		t.Fatalf("opaque directory did not hide the lower one: %v", files)
	}
}

func TestTerminateStanzas(t *testing.T) {
	for in, want := range map[string]string{"a\n\n": "a\n\n", "a\n": "a\n\n", "a": "a\n\n", "": ""} {
		if got := string(terminateStanzas([]byte(in))); got != want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

func FuzzFromTar(f *testing.F) {
	f.Add(mkTar(f, tarEntry{name: "var/lib/dpkg/status", body: "Package: a\n"}, tarEntry{name: "etc/.wh.os-release"}))
	f.Add(mkTar(f, tarEntry{name: "etc/os-release", typ: tar.TypeSymlink, link: "../x"}, tarEntry{name: "var/lib/rpm/Packages", typ: tar.TypeLink, link: "etc/os-release"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := FromTar(context.Background(), bytes.NewReader(data), Limits{MaxFile: 1 << 16, MaxTotal: 1 << 20, MaxEntries: 1000})
		if err != nil {
			return
		}
		v := NewView()
		v.Apply(fs)
		Tar(v.Files())
	})
}
