package vulnstore

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quay/claircore"
	bolt "go.etcd.io/bbolt"
)

func build(t *testing.T, dir string, n int) Meta {
	t.Helper()
	return buildWith(t, dir, BuildOptions{}, "test", n)
}

func buildWith(t *testing.T, dir string, opts BuildOptions, updater string, n int) Meta {
	t.Helper()
	ctx := context.Background()
	b, err := Begin(ctx, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	if err := b.StartUpdater(updater, KindVulnerability, "", b.opts.Now()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := b.AddVulnerability(&claircore.Vulnerability{Name: "CVE-1", Package: &claircore.Package{Name: "p"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.FinishUpdater(); err != nil {
		t.Fatal(err)
	}
	m, err := b.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHandleFollowsSwaps(t *testing.T) {
	dir := t.TempDir()
	h, err := NewHandle(Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, _, err := h.Acquire(); !errors.Is(err, ErrNotExist) {
		t.Fatalf("no database yet: %v", err)
	}
	build(t, dir, 1)
	if changed, err := h.Reload(); !changed || err != nil {
		t.Fatalf("reload: %v %v", changed, err)
	}
	s1, release1, err := h.Acquire()
	if err != nil || s1.Revision() != 1 {
		t.Fatalf("%v %v", s1, err)
	}
	build(t, dir, 2)
	if changed, _ := h.Reload(); !changed {
		t.Fatal("swap not seen")
	}
	// The old store still serves its reader until released.
	if us, err := s1.Updaters(); err != nil || us[0].Records != 1 {
		t.Fatalf("old store: %v %v", us, err)
	}
	release1()
	release1() // idempotent
	s2, release2, _ := h.Acquire()
	defer release2()
	if s2.Revision() != 2 {
		t.Fatalf("revision %d", s2.Revision())
	}
	if changed, _ := h.Reload(); changed {
		t.Fatal("no swap, no change")
	}
}

func TestSchemaMismatch(t *testing.T) {
	dir := t.TempDir()
	build(t, dir, 1)
	// Rewrite the schema key as another version would have written it.
	db, err := bolt.Open(Path(dir), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte("99")) })
	db.Close()
	_, err = Open(Path(dir))
	if err == nil || !strings.Contains(err.Error(), "schema version 99") || !strings.Contains(err.Error(), "divds-authz db update") {
		t.Fatalf("got %v", err)
	}
}

func TestNotADatabase(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(Path(dir), []byte("hello"), 0o600)
	if _, err := Open(Path(dir)); err == nil {
		t.Fatal("opened garbage")
	}
	// A writer replaces what it cannot read.
	build(t, dir, 1)
	if _, err := Open(Path(dir)); err != nil {
		t.Fatal(err)
	}
}

// A real update over the sample database keeps none of the sample data,
// even for updaters that fail, and the revision still grows.
func TestRealUpdateDropsSampleData(t *testing.T) {
	dir := t.TempDir()
	buildWith(t, dir, BuildOptions{Sample: true}, "ubuntu", 3)
	m1 := buildWith(t, dir, BuildOptions{Sample: true}, "alpine", 2) // sample: copies ubuntu forward
	if !m1.Sample || m1.Revision != 2 {
		t.Fatalf("sample meta %+v", m1)
	}
	ctx := context.Background()
	b, err := Begin(ctx, dir, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.StartUpdater("alpine", KindVulnerability, "", time.Now())
	b.AddVulnerability(&claircore.Vulnerability{Name: "CVE-2", Package: &claircore.Package{Name: "q"}})
	b.FinishUpdater()
	b.MarkFailed("ubuntu", KindVulnerability, errors.New("network down"))
	m2, err := b.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Sample || m2.Revision != 3 {
		t.Fatalf("meta %+v", m2)
	}
	s, _ := Open(Path(dir))
	defer s.Close()
	if err := s.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	us, _ := s.Updaters()
	for _, u := range us {
		if u.Name == "ubuntu" && u.Records != 0 {
			t.Fatalf("sample ubuntu data kept in a real database: %+v", u)
		}
	}
}

// A database of another schema is replaced, and the revision continues
// from its own rather than restarting at 1.
func TestRevisionContinuesOverAnotherSchema(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 3; i++ {
		build(t, dir, 1)
	}
	db, _ := bolt.Open(Path(dir), 0o600, nil)
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte("99")) })
	db.Close()
	if m := build(t, dir, 1); m.Revision != 4 {
		t.Fatalf("revision %d, want 4", m.Revision)
	}
	os.WriteFile(Path(dir), []byte("garbage"), 0o600)
	if m := build(t, dir, 1); m.Revision < 1_000_000 {
		t.Fatalf("revision %d after an unreadable file: want one seeded above any counter", m.Revision)
	}
}

// TestDamagedDatabase: a truncated or damaged file (a copy cut short, a
// full disk, a bad sector) is a clear error naming the recovery, never a
// crash: bbolt maps the file, and reading a missing page faults.
func TestDamagedDatabase(t *testing.T) {
	src := t.TempDir()
	build(t, src, 2000)
	good, err := os.ReadFile(Path(src))
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, len(good))
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	scribbled := append([]byte{}, good...)
	for i := 8192; i < len(scribbled) && i < 8192+64<<10; i++ {
		scribbled[i] = 0xa5
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"one page", good[:4096]},
		{"both meta pages", good[:8192]},
		{"cut in the middle", good[:len(good)/2]},
		{"garbage", garbage},
		{"pages overwritten", scribbled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(Path(dir), tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(Path(dir))
			if err == nil {
				// Damage the meta page does not reveal shows when the
				// data is read: that must not crash either.
				verr := s.Verify(context.Background())
				s.Close()
				if verr == nil && tt.name != "pages overwritten" {
					t.Fatal("opened and verified a damaged file")
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "db update") {
				t.Fatalf("error %v: want ErrCorrupt naming the recovery", err)
			}
			// A plugin keeps serving: the handle reports the problem.
			h, err := NewHandle(Path(dir))
			if err != nil {
				t.Fatalf("NewHandle: %v", err)
			}
			defer h.Close()
			if _, _, err := h.Acquire(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Acquire: %v", err)
			}
			// The same file is not reopened; a good one replaces it.
			if changed, err := h.Reload(); changed || err != nil {
				t.Fatalf("reload of the same damaged file: %v %v", changed, err)
			}
			build(t, dir, 1)
			if changed, err := h.Reload(); !changed || err != nil || h.Err() != nil {
				t.Fatalf("a good file did not replace it: %v %v %v", changed, err, h.Err())
			}
		})
	}
}
