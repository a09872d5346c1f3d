// Package testdata locates the read-only test data the repository carries
// in its top-level testdata/ (origins and licences in its README.md).
// Tests that need it fail, rather than skip, when it is missing: a
// silently skipped accuracy test is worse than a red one.
package testdata

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the absolute path of the module root's testdata/, or
// $DIVDS_TESTDATA when set.
func Dir(tb testing.TB) string {
	tb.Helper()
	if d := os.Getenv("DIVDS_TESTDATA"); d != "" {
		return d
	}
	td := filepath.Join(Root(tb), "testdata")
	if _, err := os.Stat(filepath.Join(td, "README.md")); err != nil {
		tb.Fatalf("test data not found at %s (set DIVDS_TESTDATA): %v", td, err)
	}
	return td
}

// Root returns the module root: the first directory above the working
// directory that holds go.mod.
func Root(tb testing.TB) string {
	tb.Helper()
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			tb.Fatalf("no go.mod above %s", wd)
		}
	}
}

// Path joins elements onto Dir.
func Path(tb testing.TB, elem ...string) string {
	tb.Helper()
	return filepath.Join(append([]string{Dir(tb)}, elem...)...)
}

// CopyTree copies the read-only tree src into dst, a directory a
// test may change; modification times are kept (mirrors serve them).
func CopyTree(tb testing.TB, src, dst string) {
	tb.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, b, 0o644); err != nil {
			return err
		}
		return os.Chtimes(target, info.ModTime(), info.ModTime())
	})
	if err != nil {
		tb.Fatal(err)
	}
}
