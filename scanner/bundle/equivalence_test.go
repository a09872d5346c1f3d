package bundle

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/quay/claircore"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/scanner/mirror"
	"github.com/divds/divds/scanner/updater"
	"github.com/divds/divds/scanner/vulnstore"
)

// content is the set of (updater, vulnerability, package, distribution,
// fixed version) in a database.
func content(t *testing.T, dir string) map[string]bool {
	t.Helper()
	s, err := vulnstore.Open(vulnstore.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := map[string]bool{}
	err = s.EachVulnerability(context.Background(), func(u string, v *claircore.Vulnerability) error {
		dist := ""
		if v.Dist != nil {
			dist = v.Dist.VersionID
		}
		out[fmt.Sprintf("%s|%s|%s|%s|%s", u, v.Name, v.Package.Name, dist, v.FixedInVersion)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestImportEqualsUpdate(t *testing.T) {
	tests := []struct {
		bundle string
		set    string
	}{
		{"alpine-secdb.jsonl.zst", "alpine"},
		{"ubuntu-bionic-oval-2021-08-31.jsonl.zst", "ubuntu"},
		{"debian-tracker-excerpt.jsonl.zst", "debian"},
	}
	for _, tt := range tests {
		t.Run(tt.set, func(t *testing.T) {
			imported := t.TempDir()
			importFile(t, imported, testdata.Path(t, "bundles", tt.bundle))

			updated := t.TempDir()
			ctx := context.Background()
			b, err := vulnstore.Begin(ctx, updated, vulnstore.BuildOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Abort()
			sum, err := updater.Run(ctx, b, updater.Options{Sets: []string{tt.set}, Client: mirror.New(os.DirFS(testdata.Path(t, "mirror"))).Client()})
			if err != nil || sum.Failed() > 0 {
				t.Fatalf("update: %v %+v", err, sum)
			}
			if _, err := b.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			a, u := content(t, imported), content(t, updated)
			if len(a) == 0 {
				t.Fatal("empty import")
			}
			var diff []string
			for k := range a {
				if !u[k] {
					diff = append(diff, "only imported: "+k)
				}
			}
			for k := range u {
				if !a[k] {
					diff = append(diff, "only updated: "+k)
				}
			}
			if len(diff) > 0 {
				if len(diff) > 10 {
					diff = diff[:10]
				}
				t.Fatalf("%d distinct records imported, %d updated; differences:\n%s", len(a), len(u), strings.Join(diff, "\n"))
			}
		})
	}
}

func TestImportKeepsOtherUpdaters(t *testing.T) {
	dir := t.TempDir()
	importFile(t, dir, testdata.Path(t, "bundles", "alpine-secdb.jsonl.zst"))
	before := content(t, dir)
	_, meta := importFile(t, dir, testdata.Path(t, "bundles", "debian-tracker-excerpt.jsonl.zst"))
	after := content(t, dir)
	if meta.Revision != 2 || len(after) != len(before)+4 {
		t.Fatalf("revision %d, %d records after, %d before", meta.Revision, len(after), len(before))
	}
	// Re-importing alpine replaces alpine and keeps debian.
	importFile(t, dir, testdata.Path(t, "bundles", "alpine-secdb.jsonl.zst"))
	if again := content(t, dir); len(again) != len(after) {
		t.Fatalf("%d records after re-import, want %d", len(again), len(after))
	}
	s, _ := vulnstore.Open(vulnstore.Path(dir))
	defer s.Close()
	if err := s.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestBadBundles(t *testing.T) {
	good, err := os.ReadFile(testdata.Path(t, "bundles", "alpine-secdb.jsonl.zst"))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := zstdDecode(good)
	if err != nil {
		t.Fatal(err)
	}
	corrupted := append([]byte(nil), good...)
	for i := len(corrupted) / 2; i < len(corrupted)/2+64; i++ {
		corrupted[i] ^= 0x5a
	}
	lines := bytes.SplitN(plain, []byte("\n"), 3)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"truncated zstd", good[:len(good)/2], "zstd bundle"},
		{"corrupted zstd", corrupted, "zstd bundle"},
		{"truncated line", plain[:len(lines[0])+len(lines[1])/2+1], "line 2"},
		{"not json", []byte("hello world\n"), "not a jsonblob record"},
		{"other json", []byte(`{"name":"x"}` + "\n"), "no Updater or Ref"},
		{"gzip of garbage", []byte{0x1f, 0x8b, 0, 0, 0}, "gzip"},
		{"empty", nil, "empty"},
		{"tar archive", append([]byte("ustar"), make([]byte, 600)...), "not a jsonblob record"},
		// claircore's enum decoders panic on a substring of a valid name;
		// found by FuzzImport.
		{"package kind substring", []byte(`{"Updater":"u","Ref":"800f0162-21f3-499b-8dfa-c27682c878d1","Vuln":{"package":{"kind":"ource"}},"Kind":"vulnerability"}` + "\n"), "line 1: not a jsonblob record: malformed field value"},
		{"arch_op substring", []byte(`{"Updater":"u","Ref":"800f0162-21f3-499b-8dfa-c27682c878d1","Vuln":{"arch_op":"qual"},"Kind":"vulnerability"}` + "\n"), "line 1: not a jsonblob record: malformed field value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			importFile(t, dir, testdata.Path(t, "bundles", "debian-tracker-excerpt.jsonl.zst"))
			before := content(t, dir)
			st, _ := os.Stat(vulnstore.Path(dir))

			ctx := context.Background()
			b, err := vulnstore.Begin(ctx, dir, vulnstore.BuildOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = Import(ctx, b, bytes.NewReader(tt.data), Options{})
			b.Abort()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			after := content(t, dir)
			st2, _ := os.Stat(vulnstore.Path(dir))
			if len(after) != len(before) || !os.SameFile(st, st2) {
				t.Fatal("the previous database changed")
			}
			if _, err := os.Stat(filepath.Join(dir, vulnstore.FileName+".tmp")); !os.IsNotExist(err) {
				t.Fatal("the temporary database was left behind")
			}
		})
	}
}

func TestLineLimit(t *testing.T) {
	dir := t.TempDir()
	b, err := vulnstore.Begin(context.Background(), dir, vulnstore.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	_, err = Import(context.Background(), b, strings.NewReader(strings.Repeat("x", 2000)), Options{MaxLine: 1000})
	if err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("got %v", err)
	}
}

func zstdDecode(b []byte) ([]byte, error) {
	d, err := zstd.NewReader(nil)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.DecodeAll(b, nil)
}
