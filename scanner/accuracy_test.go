package scanner_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	apkversion "github.com/knqyf263/go-apk-version"
	"github.com/ulikunitz/xz"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/internal/testdb"
	"github.com/divds/divds/report"
	"github.com/divds/divds/scanner"
	"github.com/divds/divds/scanner/mirror"
	"github.com/divds/divds/scanner/source"
	"github.com/divds/divds/scanner/updater"
	"github.com/divds/divds/scanner/vulnstore"
)

var dbs sync.Map // bundle name -> state dir

// TestMain removes the databases the tests shared.
func TestMain(m *testing.M) {
	code := m.Run()
	dbs.Range(func(_, v any) bool { os.RemoveAll(v.(string)); return true })
	os.Exit(code)
}

// bundleDB imports a shared bundle once per test binary.
func bundleDB(t testing.TB, name string) *vulnstore.Store {
	t.Helper()
	v, ok := dbs.Load(name)
	if !ok {
		dir, err := os.MkdirTemp("", "divds-scan-")
		if err != nil {
			t.Fatal(err)
		}
		testdb.Import(t, dir, name)
		v, _ = dbs.LoadOrStore(name, dir)
	}
	s, err := vulnstore.Open(vulnstore.Path(v.(string)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func scanRootfs(t testing.TB, dir string, store *vulnstore.Store) *report.Report {
	t.Helper()
	rep, _, err := scanner.New(scanner.Options{}).Scan(context.Background(), source.Rootfs{Dir: dir}, store)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

type pair struct{ cve, pkg string }

func expectedBionic(t *testing.T) (map[string]bool, map[pair]bool) {
	f, err := os.Open(testdata.Path(t, "expected", "ubuntu-18.04-bionic.oscap-true-definitions.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cves, pairs := map[string]bool{}, map[pair]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var d struct {
			CVE      string `json:"cve"`
			Packages []struct {
				Name string `json:"name"`
			} `json:"packages"`
		}
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		cves[d.CVE] = true
		for _, p := range d.Packages {
			pairs[pair{d.CVE, p.Name}] = true
		}
	}
	return cves, pairs
}

func findingPairs(rep *report.Report) (map[string]bool, map[pair]bool) {
	cves, pairs := map[string]bool{}, map[pair]bool{}
	for _, f := range rep.Findings {
		cves[f.ID] = true
		pairs[pair{f.ID, f.Package}] = true
	}
	return cves, pairs
}

func diff(a, b map[pair]bool) []pair {
	var out []pair
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].cve+out[i].pkg < out[j].cve+out[j].pkg })
	return out
}

// mirrorStore builds a database by running the given updater sets over
// the mirror in mirrorDir, and opens it.
func mirrorStore(t *testing.T, mirrorDir string, sets ...string) *vulnstore.Store {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	b, err := vulnstore.Begin(ctx, dir, vulnstore.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	sum, err := updater.Run(ctx, b, updater.Options{Sets: sets, Client: mirror.New(os.DirFS(mirrorDir)).Client()})
	if err != nil || sum.Failed() > 0 {
		t.Fatalf("update %v: %v %+v", sets, err, sum)
	}
	if _, err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := vulnstore.Open(vulnstore.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// copyDir copies a read-only shared rootfs into a directory a test may change.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	testdata.CopyTree(t, src, dst)
	return dst
}

func TestAccuracyUbuntuBionicExact(t *testing.T) {
	store := bundleDB(t, "ubuntu-bionic-oval-2021-08-31.jsonl.zst")
	rep := scanRootfs(t, testdata.Path(t, "rootfs", "ubuntu-18.04-bionic"), store)
	wantCVEs, wantPairs := expectedBionic(t)
	gotCVEs, gotPairs := findingPairs(rep)
	for c := range wantCVEs {
		if !gotCVEs[c] {
			t.Errorf("missing %s", c)
		}
	}
	for c := range gotCVEs {
		if !wantCVEs[c] {
			t.Errorf("extra %s", c)
		}
	}
	if extra := diff(gotPairs, wantPairs); len(extra) > 0 {
		t.Errorf("pairs OpenSCAP does not report: %v", extra)
	}
	// Exactly 261 pairs, as Grype and Trivy report: bsdutils
	// 1:2.31.1-0.4ubuntu3 is built from util-linux 2.31.1-0.4ubuntu3,
	// vulnerable to four CVEs whose fixes are source versions without an
	// epoch (compared by its own version, the epoch hid it: 257). OpenSCAP
	// also names login and passwd for CVE-2017-2616, but their source,
	// shadow 1:4.5, is past the fix: not findings.
	if len(gotPairs) != 261 || len(rep.Findings) != 261 {
		t.Errorf("%d pairs, %d findings; want 261", len(gotPairs), len(rep.Findings))
	}
	for _, cve := range []string{"CVE-2016-2779", "CVE-2016-5011", "CVE-2017-2616", "CVE-2018-7738"} {
		if !gotPairs[pair{cve, "bsdutils"}] {
			t.Errorf("%s bsdutils missing", cve)
		}
	}
	for _, pkg := range []string{"login", "passwd"} {
		if gotPairs[pair{"CVE-2017-2616", pkg}] {
			t.Errorf("CVE-2017-2616 %s: its source is past the fix", pkg)
		}
	}
}

// The same scan over a database built by `db update --mirror` from the
// same feeds gives the same findings.
func TestAccuracyBionicFromMirror(t *testing.T) {
	mirrored := mirrorStore(t, testdata.Path(t, "mirror"), "ubuntu")
	root := testdata.Path(t, "rootfs", "ubuntu-18.04-bionic")
	a := scanRootfs(t, root, bundleDB(t, "ubuntu-bionic-oval-2021-08-31.jsonl.zst"))
	m := scanRootfs(t, root, mirrored)
	strip := func(r *report.Report) []report.Finding { return r.Findings }
	if !reflect.DeepEqual(strip(a), strip(m)) {
		t.Fatalf("bundle DB: %d findings, mirror DB: %d findings, or they differ", len(a.Findings), len(m.Findings))
	}
}

// claircore's dpkg parser drops the last package of a status file that
// does not end with a blank line; DIVDS must not lose it.
func TestDpkgStatusWithoutFinalBlankLine(t *testing.T) {
	store := bundleDB(t, "ubuntu-bionic-oval-2021-08-31.jsonl.zst")
	orig := testdata.Path(t, "rootfs", "ubuntu-18.04-bionic")
	want := scanRootfs(t, orig, store)
	for _, cut := range []string{"\n", "\n\n"} {
		root := copyDir(t, orig)
		status := filepath.Join(root, "var/lib/dpkg/status")
		b, _ := os.ReadFile(status)
		if !bytes.HasSuffix(b, []byte("\n\n")) {
			t.Fatal("the shared status file no longer ends with a blank line")
		}
		os.WriteFile(status, bytes.TrimSuffix(b, []byte(cut)), 0o644)
		got := scanRootfs(t, root, store)
		if len(got.Packages) != len(want.Packages) || len(got.Findings) != len(want.Findings) {
			t.Errorf("cut %q: %d packages %d findings, want %d and %d", cut, len(got.Packages), len(got.Findings), len(want.Packages), len(want.Findings))
		}
	}
	// claircore's own derived status files lack it too.
	files, _ := filepath.Glob(testdata.Path(t, "rootfs-extra", "claircore-derived", "*.status"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		n := bytes.Count(b, []byte("\nPackage: ")) + 1
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755)
		os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), b, 0o644)
		if got := scanRootfs(t, root, nil); countKind(got, "binary") != n {
			t.Errorf("%s: %d binary packages, want %d", filepath.Base(f), countKind(got, "binary"), n)
		}
	}
}

func countKind(r *report.Report, kind string) int {
	n := 0
	for _, p := range r.Packages {
		if p.Kind == kind {
			n++
		}
	}
	return n
}

// TestAccuracyAlpine computes the expected findings of the alpine 3.7.3
// minirootfs from the secdb v3.7 files on its own, with apk's version
// ordering, and compares.
func TestAccuracyAlpine(t *testing.T) {
	store := bundleDB(t, "alpine-secdb.jsonl.zst")
	root := testdata.Path(t, "rootfs", "alpine-3.7.3")
	rep := scanRootfs(t, root, store)

	installed := parseAPK(t, filepath.Join(root, "lib/apk/db/installed"))
	want := map[pair]bool{}
	for _, repo := range []string{"main", "community"} {
		raw, err := os.ReadFile(testdata.Path(t, "feeds", "alpine-secdb", "v3.7", repo+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var db struct {
			Packages []struct {
				Pkg struct {
					Name     string              `json:"name"`
					Secfixes map[string][]string `json:"secfixes"`
				} `json:"pkg"`
			} `json:"packages"`
		}
		if err := json.Unmarshal(raw, &db); err != nil {
			t.Fatal(err)
		}
		for _, p := range db.Packages {
			for _, bin := range installed {
				if bin.origin != p.Pkg.Name {
					continue
				}
				for fixed, cves := range p.Pkg.Secfixes {
					fv, err := apkversion.NewVersion(fixed)
					if err != nil {
						t.Fatalf("secdb version %q: %v", fixed, err)
					}
					iv, err := apkversion.NewVersion(bin.version)
					if err != nil {
						t.Fatal(err)
					}
					if !iv.LessThan(fv) {
						continue
					}
					for _, c := range cves {
						for _, id := range strings.Fields(c) {
							want[pair{id, bin.name}] = true
						}
					}
				}
			}
		}
	}
	_, got := findingPairs(rep)
	if len(want) == 0 {
		t.Fatal("expected set is empty: the test data changed")
	}
	if missing, extra := diff(want, got), diff(got, want); len(missing)+len(extra) > 0 {
		t.Fatalf("%d expected, %d found; missing %v; extra %v", len(want), len(got), missing, extra)
	}
	t.Logf("%d (CVE, package) pairs, as computed from the secdb", len(want))
}

type apkPkg struct{ name, version, origin string }

func parseAPK(t *testing.T, path string) []apkPkg {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []apkPkg
	for _, stanza := range strings.Split(string(b), "\n\n") {
		var p apkPkg
		for _, line := range strings.Split(stanza, "\n") {
			switch {
			case strings.HasPrefix(line, "P:"):
				p.name = line[2:]
			case strings.HasPrefix(line, "V:"):
				p.version = line[2:]
			case strings.HasPrefix(line, "o:"):
				p.origin = line[2:]
			}
		}
		if p.name != "" {
			if p.origin == "" {
				p.origin = p.name
			}
			out = append(out, p)
		}
	}
	return out
}

// centos7Root is the centos:7 rootfs with its rpmdb decompressed.
func centos7Root(t *testing.T) string {
	t.Helper()
	root := copyDir(t, testdata.Path(t, "rootfs", "centos-7"))
	xzPath := filepath.Join(root, "var/lib/rpm/Packages.xz")
	f, err := os.Open(xzPath)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := xz.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := os.Create(filepath.Join(root, "var/lib/rpm/Packages"))
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
	out.Close()
	f.Close()
	os.Remove(xzPath)
	return root
}

// TestPackagesCentOS7 lists the centos:7 rpmdb (BerkeleyDB) and compares
// it with rpm's own listing, epochs included.
func TestPackagesCentOS7(t *testing.T) {
	root := centos7Root(t)
	rep := scanRootfs(t, root, nil)
	raw, err := os.ReadFile(filepath.Join(root, "rpm-qa.expected.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		c := strings.Split(line, "\t")
		v := c[2] + "-" + c[3]
		if c[1] != "(none)" {
			v = c[1] + ":" + v
		}
		want[c[0]+" "+v] = true
	}
	got := map[string]bool{}
	for _, p := range rep.Packages {
		if p.Kind == "binary" {
			got[p.Name+" "+p.Version] = true
		}
	}
	if len(want) != 144 {
		t.Fatalf("expected listing has %d rows", len(want))
	}
	for k := range want {
		if !got[k] {
			t.Errorf("missing %s", k)
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("extra %s", k)
		}
	}
	if rep.Image.Distribution == "" {
		t.Error("no distribution found")
	}
}

func TestArchiveSource(t *testing.T) {
	store := bundleDB(t, "alpine-secdb.jsonl.zst")
	rep, _, err := scanner.New(scanner.Options{}).Scan(context.Background(),
		source.Archive{Path: testdata.Path(t, "images", "alpine-3.10.4.docker-save.tar.gz")}, store)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Image.Layers) != 1 || len(rep.Packages) == 0 || rep.Image.Distribution == "" || !strings.HasPrefix(rep.Image.ID, "sha256:") {
		t.Fatalf("image %+v, %d packages", rep.Image, len(rep.Packages))
	}
	t.Logf("%s %v: %d packages, %d findings, %s", rep.Image.ID, rep.Image.Names, len(rep.Packages), len(rep.Findings), rep.Image.Distribution)
}
