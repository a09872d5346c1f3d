package vulnstore_test

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/quay/claircore"
	"github.com/quay/claircore/datastore"
	"github.com/quay/claircore/libvuln/driver"
	"github.com/quay/claircore/toolkit/types"

	"github.com/divds/divds/internal/testdb"
	"github.com/divds/divds/scanner/vulnstore"
)

var (
	bionicOnce sync.Once
	bionicDir  string
)

// TestMain removes the database the benchmarks shared.
func TestMain(m *testing.M) {
	code := m.Run()
	if bionicDir != "" {
		os.RemoveAll(bionicDir)
	}
	os.Exit(code)
}

// bionicDB imports the bionic bundle once per test binary.
func bionicDB(b *testing.B) string {
	bionicOnce.Do(func() {
		dir, err := os.MkdirTemp("", "divds-bench-")
		if err != nil {
			b.Fatal(err)
		}
		testdb.Import(b, dir, "ubuntu-bionic-oval-2021-08-31.jsonl.zst")
		bionicDir = dir
	})
	return bionicDir
}

func BenchmarkOpen(b *testing.B) {
	path := vulnstore.Path(bionicDB(b))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := vulnstore.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

func BenchmarkLookupPerPackage(b *testing.B) {
	s, err := vulnstore.Open(vulnstore.Path(bionicDB(b)))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	dist := &claircore.Distribution{DID: "ubuntu", VersionID: "18.04", VersionCodeName: "bionic"}
	names := []string{"libssl1.1", "libc6", "libsystemd0", "zlib1g", "bash", "tar", "gzip", "perl-base"}
	records := make([]*claircore.IndexRecord, len(names))
	for i, n := range names {
		records[i] = &claircore.IndexRecord{
			Package:      &claircore.Package{ID: n, Name: n, Kind: types.BinaryPackage, Version: "1"},
			Distribution: dist,
		}
	}
	opts := datastore.GetOpts{Matchers: []driver.MatchConstraint{driver.DistributionDID, driver.DistributionName, driver.DistributionVersion}}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := records[i%len(records)]
		if _, err := s.Get(ctx, []*claircore.IndexRecord{r}, opts); err != nil {
			b.Fatal(err)
		}
	}
}
