// Package e2e proves DIVDS against real components: Debian's dockerd,
// docker-registry and rsyslogd, started privately by package harness.
package e2e

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/internal/testdb"
	"github.com/divds/divds/scanner/vulnstore"
)

// bin is the divds-authz binary built for these tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "divds-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "divds-authz")
	if other := os.Getenv("DIVDS_E2E_BIN"); other != "" {
		// Another build, such as one from before a fix, to show that a
		// new row of the bypass tables is red without the fix.
		bin = other
		fmt.Fprintf(os.Stderr, "e2e: testing %s (DIVDS_E2E_BIN)\n", bin)
	} else {
		args := []string{"build", "-o", bin}
		if os.Getenv("DIVDS_E2E_RACE") == "1" {
			// The plugin under the race detector, on the real daemon's
			// concurrency; a race ends it (GORACE halt_on_error), which
			// fails the test that saw it.
			args = append(args, "-race")
			os.Setenv("GORACE", "halt_on_error=1")
		}
		if out, err := exec.Command("go", append(args, "github.com/divds/divds/cmd/divds-authz")...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build divds-authz: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	stateDirs.Range(func(_, v any) bool { os.RemoveAll(v.(string)); return true })
	os.Exit(code)
}

var stateDirs sync.Map

// stateWith returns a fresh state directory holding a database imported
// from the named bundles (the import is done once per set, then copied).
func stateWith(t *testing.T, bundles ...string) string {
	t.Helper()
	key := strings.Join(bundles, ",")
	src, ok := stateDirs.Load(key)
	if !ok {
		dir, err := os.MkdirTemp("", "divds-db-")
		if err != nil {
			t.Fatal(err)
		}
		testdb.Import(t, dir, bundles...)
		src, _ = stateDirs.LoadOrStore(key, dir)
	}
	dst := t.TempDir()
	raw, err := os.ReadFile(vulnstore.Path(src.(string)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vulnstore.Path(dst), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// tarDir writes dir as an uncompressed tar (for docker import).
func tarDir(t *testing.T, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		link := ""
		if info.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = rel
		if info.IsDir() {
			h.Name += "/"
			h.Mode = 0o755
		} else {
			h.Mode = int64(info.Mode().Perm() | 0o444)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// untarGz extracts a .tar.gz (the Alpine minirootfs) into dir.
func untarGz(t *testing.T, path, dir string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(target), 0o755)
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o777)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(out, tr)
			out.Close()
		case tar.TypeSymlink:
			os.MkdirAll(filepath.Dir(target), 0o755)
			os.Symlink(h.Linkname, target)
		case tar.TypeLink:
			os.Link(filepath.Join(dir, filepath.Clean("/"+h.Linkname)), target)
		}
	}
}

// copyTree copies src into dst.
func copyTree(t *testing.T, src, dst string) { testdata.CopyTree(t, src, dst) }
