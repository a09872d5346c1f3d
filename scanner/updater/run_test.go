package updater

import (
	"context"
	"io/fs"
	"net/url"
	"os"
	"testing"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/scanner/mirror"
	"github.com/divds/divds/scanner/vulnstore"
)

// update runs the given sets over the shared mirror into dir.
func update(t *testing.T, dir string, sets ...string) (Summary, *mirror.Transport) {
	t.Helper()
	return updateFrom(t, testdata.Path(t, "mirror"), dir, sets...)
}

// runOver runs sets over mirrorDir into a fresh database.
func runOver(t *testing.T, mirrorDir string, sets ...string) Summary {
	t.Helper()
	sum, _ := updateFrom(t, mirrorDir, t.TempDir(), sets...)
	return sum
}

func updateFrom(t *testing.T, mirrorDir, dir string, sets ...string) (Summary, *mirror.Transport) {
	t.Helper()
	ctx := context.Background()
	tr := mirror.New(os.DirFS(mirrorDir))
	b, err := vulnstore.Begin(ctx, dir, vulnstore.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	sum, err := Run(ctx, b, Options{Sets: sets, Client: tr.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return sum, tr
}

func TestOfflineUpdateFromMirror(t *testing.T) {
	dir := t.TempDir()
	sum, tr := update(t, dir, "alpine", "ubuntu", "debian")
	for _, r := range sum.Results {
		if r.Status != Updated {
			t.Errorf("%s/%s: %s %s", r.Set, r.Updater, r.Status, r.Error)
		}
	}
	// Every request went to a host the mirror holds: nothing could have
	// reached the network.
	root := os.DirFS(testdata.Path(t, "mirror"))
	for _, r := range tr.Requests() {
		u, _ := url.Parse(r.URL)
		if _, err := fs.Stat(root, u.Hostname()); err != nil {
			t.Errorf("request outside the mirror: %s %s", r.Method, r.URL)
		}
	}
	s, err := vulnstore.Open(vulnstore.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	us, _ := s.Updaters()
	got := map[string]int{}
	for _, u := range us {
		got[u.Name] = u.Records
	}
	for name, want := range map[string]int{"ubuntu/updater/bionic": 186661, "debian/updater": 4, "alpine-main-v3.7-updater": 1078} {
		if got[name] != want {
			t.Errorf("%s: %d records, want %d", name, got[name], want)
		}
	}
}
