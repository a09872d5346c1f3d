package bundle

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/scanner/vulnstore"
)

func importFile(tb testing.TB, dir, path string) (Summary, vulnstore.Meta) {
	tb.Helper()
	ctx := context.Background()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	b, err := vulnstore.Begin(ctx, dir, vulnstore.BuildOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	defer b.Abort()
	sum, err := Import(ctx, b, f, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	meta, err := b.Commit(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return sum, meta
}

func BenchmarkImportBionic(b *testing.B) {
	path := testdata.Path(b, "bundles", "ubuntu-bionic-oval-2021-08-31.jsonl.zst")
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		sum, _ := importFile(b, dir, path)
		b.ReportMetric(float64(sum.Records)/b.Elapsed().Seconds()*float64(i+1), "records/s")
		st, _ := os.Stat(vulnstore.Path(dir))
		b.ReportMetric(float64(st.Size())/1e6, "MB")
	}
}

func TestImportExportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	sum, meta := importFile(t, dir, testdata.Path(t, "bundles", "alpine-secdb.jsonl.zst"))
	if sum.Records != 12028 || len(sum.Updaters) != 17 || meta.Revision != 1 {
		t.Fatalf("imported %d records of %d updaters, revision %d", sum.Records, len(sum.Updaters), meta.Revision)
	}
	s, err := vulnstore.Open(vulnstore.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	esum, err := Export(context.Background(), s, &out)
	s.Close()
	if err != nil || esum.Records != sum.Records {
		t.Fatalf("export: %v, %d records", err, esum.Records)
	}
	dir2 := t.TempDir()
	p := dir2 + "/export.jsonl"
	os.WriteFile(p, out.Bytes(), 0o600)
	sum2, _ := importFile(t, dir2, p)
	if sum2.Records != sum.Records {
		t.Fatalf("re-import: %d records, want %d", sum2.Records, sum.Records)
	}
}
