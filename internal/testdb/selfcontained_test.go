package testdb

// This test lives here, not beside package testdata: go ./... patterns
// skip directories named testdata, so a test there would never run.

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/divds/divds/internal/testdata"
)

// TestNothingReadsOutsideTheRepository keeps a fresh clone self-sufficient:
// no code, script or build file may point at a directory beside the
// repository (the test data collection the project was started from).
func TestNothingReadsOutsideTheRepository(t *testing.T) {
	root := testdata.Root(t)
	needle := []byte("../" + "shared")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			switch rel {
			case ".git", "bin", "build", ".state", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		name := d.Name()
		code := strings.HasSuffix(name, ".go") || strings.HasSuffix(name, ".sh") ||
			name == "Makefile" || strings.HasPrefix(rel, ".ci"+string(filepath.Separator)) ||
			strings.HasSuffix(name, ".service") || strings.HasSuffix(name, ".socket")
		if !code {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			t.Errorf("%s reads %s: a fresh clone has nothing beside it; use testdata/", rel, needle)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
