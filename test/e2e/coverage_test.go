package e2e

import (
	"path/filepath"
	"testing"

	"github.com/divds/divds/internal/testdata"
)

// TestUndiagnosedImage: an image whose packages cannot be matched (here
// Debian 12, with no Debian data in the database) scored 0 and ran. The
// default policy refuses it, naming what is missing; an image with no
// package database at all is allowed.
func TestUndiagnosedImage(t *testing.T) {
	g := startGate(t, "")
	defer g.dumpOnFailure(t)
	tar := filepath.Join(g.tars, "bookworm.tar")
	tarDir(t, testdata.Path(t, "rootfs", "debian-12-bookworm"), tar)
	g.d.MustCLI(t, "import", tar, "bookworm:1")
	out, err := g.cli("create", "bookworm:1", "/bin/true")
	mustFail(t, "create of an undiagnosed image", out, err, "image not diagnosed", "no-data", "Debian security tracker", "undiagnosed: deny")
	empty := t.TempDir()
	emptyTar := filepath.Join(g.tars, "empty.tar")
	tarDir(t, empty, emptyTar)
	g.d.MustCLI(t, "import", emptyTar, "nopackages:1")
	g.d.MustCLI(t, "create", "nopackages:1", "/bin/true")
	if n := g.p.Metric(`divds_verdicts_by_coverage_total{coverage="no-data"}`); n < 1 {
		t.Fatalf("divds_verdicts_by_coverage_total{coverage=\"no-data\"} = %v", n)
	}
	g.reload(t, "undiagnosed: allow\n")
	g.d.MustCLI(t, "create", "bookworm:1", "/bin/true")
}
