package scanner_test

import (
	"context"
	"testing"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/scanner"
	"github.com/divds/divds/scanner/source"
)

// BenchmarkScanRootfsInProcess is the plugin's path: the database is
// already open, the bionic rootfs is read, indexed and matched.
func BenchmarkScanRootfsInProcess(b *testing.B) {
	store := bundleDB(b, "ubuntu-bionic-oval-2021-08-31.jsonl.zst")
	src := source.Rootfs{Dir: testdata.Path(b, "rootfs", "ubuntu-18.04-bionic")}
	sc := scanner.New(scanner.Options{})
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, _, err := sc.Scan(ctx, src, store)
		if err != nil || len(rep.Findings) != 261 {
			b.Fatalf("%v, %d findings", err, len(rep.Findings))
		}
	}
}
