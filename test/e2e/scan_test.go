package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/report"
	"github.com/divds/divds/scanner"
	"github.com/divds/divds/scanner/source"
	"github.com/divds/divds/scanner/vulnstore"
	"github.com/divds/divds/test/harness"
)

func openStore(t *testing.T, dir string) *vulnstore.Store {
	t.Helper()
	s, err := vulnstore.Open(vulnstore.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func scan(t *testing.T, src source.Source, s *vulnstore.Store) *report.Report {
	t.Helper()
	rep, _, err := scanner.New(scanner.Options{}).Scan(context.Background(), src, s)
	if err != nil {
		t.Fatalf("scan %s: %v", src.Describe(), err)
	}
	return rep
}

// shape is what must not depend on the source: packages and findings
// with the layer that brought each.
func shape(r *report.Report) []string {
	var out []string
	for _, p := range r.Packages {
		out = append(out, fmt.Sprintf("pkg %s %s %s", p.Name, p.Version, p.Layer))
	}
	for _, f := range r.Findings {
		out = append(out, fmt.Sprintf("finding %s %s %s %s %s", f.ID, f.Package, f.Version, f.Severity, f.Layer))
	}
	sort.Strings(out)
	return out
}

// TestOneImageEverySource: the alpine 3.10.4 archive gives identical
// findings and layer attribution from the archive, the daemon (layer
// directories and ImageSave) and a registry.
func TestOneImageEverySource(t *testing.T) {
	d := harness.StartDocker(t, harness.DockerOptions{})
	reg := harness.StartRegistry(t)
	store := openStore(t, stateWith(t, "alpine-secdb.jsonl.zst"))
	archive := testdata.Path(t, "images", "alpine-3.10.4.docker-save.tar.gz")

	want := scan(t, source.Archive{Path: archive}, store)
	if len(want.Packages) == 0 {
		t.Fatal("no packages in the archive")
	}
	d.MustCLI(t, "load", "-i", archive)
	// On the containerd store the layers are its snapshot directories.
	stores := &source.StoreFinder{}
	defer stores.Close()
	cs := stores.Find(t.Context(), d.Client)
	if (cs != nil) != d.Engine.ContainerdStore {
		t.Fatalf("docker info names the containerd store as %+v on %s", cs, d.Engine.Name)
	}
	direct := scan(t, source.Docker{Client: d.Client, Ref: "alpine:3.10", Containerd: cs}, store)
	if len(direct.Warnings) > 0 {
		t.Fatalf("the direct read fell back: %v", direct.Warnings)
	}
	saved := scan(t, source.Docker{Client: d.Client, Ref: "alpine:3.10", ForceSave: true}, store)
	remoteRef := reg.Addr + "/alpine:3.10"
	d.MustCLI(t, "tag", "alpine:3.10", remoteRef)
	d.MustCLI(t, "push", remoteRef)
	remote := scan(t, source.Registry{Ref: remoteRef}, store)

	sources := map[string]*report.Report{"daemon (layer directories)": direct, "daemon (ImageSave)": saved, "registry": remote}
	if cs != nil {
		// By ID, as the plugin reads: from containerd alone.
		byID := scan(t, source.Docker{Client: d.Client, Ref: direct.Image.ID, Containerd: cs}, store)
		if byID.Image.ID != direct.Image.ID || !slices.Contains(byID.Image.Names, "alpine:3.10") || len(byID.Warnings) > 0 {
			t.Errorf("read from containerd: %+v, warnings %v", byID.Image, byID.Warnings)
		}
		sources["daemon (containerd, by ID)"] = byID
	}
	for name, got := range sources {
		if !reflect.DeepEqual(shape(got), shape(want)) {
			t.Errorf("%s differs from the archive:\n%v\nwant\n%v", name, shape(got), shape(want))
		}
		if got.Image.ID != want.Image.ID && !(d.Engine.ContainerdStore && strings.HasPrefix(name, "daemon")) {
			// The containerd store's image IDs are manifest digests, not
			// config digests: the same image, another name for it.
			t.Errorf("%s: image ID %s, archive %s", name, got.Image.ID, want.Image.ID)
		}
	}
}

// buildContext writes a docker build context.
func buildContext(t *testing.T, dockerfile string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	harness.WriteFile(t, filepath.Join(dir, "Dockerfile"), []byte(dockerfile))
	for p, body := range files {
		harness.WriteFile(t, filepath.Join(dir, p), []byte(body))
	}
	return dir
}

// TestWhiteouts builds real multi-layer images FROM scratch whose upper
// layers replace or delete the package database: the findings follow the
// final filesystem.
func TestWhiteouts(t *testing.T) {
	d := harness.StartDocker(t, harness.DockerOptions{})
	store := openStore(t, stateWith(t, "ubuntu-bionic-oval-2021-08-31.jsonl.zst"))
	bionic := testdata.Path(t, "rootfs", "ubuntu-18.04-bionic")

	// The bionic status file cut down to one old package.
	status, _ := os.ReadFile(filepath.Join(bionic, "var/lib/dpkg/status"))
	// libc6 as it was, libgcrypt20 downgraded: the replacing layer brings
	// a new libgcrypt20 and keeps libc6.
	var small string
	for _, stanza := range strings.Split(string(status), "\n\n") {
		switch {
		case strings.HasPrefix(stanza, "Package: libc6\n"):
			small += stanza + "\n\n"
		case strings.HasPrefix(stanza, "Package: libgcrypt20\n"):
			small += strings.Replace(stanza, "\nVersion: 1.8.1-4ubuntu1\n", "\nVersion: 1.8.1-4\n", 1) + "\n\n"
		}
	}
	if !strings.Contains(small, "Version: 1.8.1-4\n") || !strings.Contains(small, "Package: libc6") {
		t.Fatalf("the bionic status changed: %q", small)
	}
	ctxDir := t.TempDir()
	// busybox for RUN; without Alpine's package database, which would
	// mix Alpine packages into an Ubuntu image.
	untarGz(t, testdata.Path(t, "images", "alpine-minirootfs-3.7.3-x86_64.tar.gz"), filepath.Join(ctxDir, "alpine"))
	os.RemoveAll(filepath.Join(ctxDir, "alpine/lib/apk"))
	os.Remove(filepath.Join(ctxDir, "alpine/etc/os-release"))
	os.Remove(filepath.Join(ctxDir, "alpine/etc/alpine-release"))
	copyTree(t, bionic, filepath.Join(ctxDir, "bionic"))
	harness.WriteFile(t, filepath.Join(ctxDir, "small-status"), []byte(small))
	os.MkdirAll(filepath.Join(ctxDir, "bionic/var/lib/dpkg/info"), 0o755)
	build := func(tag, dockerfile string) {
		harness.WriteFile(t, filepath.Join(ctxDir, "Dockerfile"), []byte(dockerfile))
		d.MustCLI(t, "build", "--network", "none", "-t", tag, ctxDir)
	}
	base := "FROM scratch\nCOPY alpine/ /\nCOPY bionic/ /\n"
	build("wh:base", base)
	build("wh:replaced", base+"COPY small-status /var/lib/dpkg/status\n")
	build("wh:deleted", base+"RUN rm /var/lib/dpkg/status\n")
	build("wh:opaque", base+"RUN rm -rf /var/lib/dpkg && mkdir -p /var/lib/dpkg/info && touch /var/lib/dpkg/status\n")

	full := scan(t, source.Rootfs{Dir: bionic}, store)
	smallRoot := t.TempDir()
	copyTree(t, bionic, smallRoot)
	os.WriteFile(filepath.Join(smallRoot, "var/lib/dpkg/status"), []byte(small), 0o644)
	smallRep := scan(t, source.Rootfs{Dir: smallRoot}, store)

	ids := func(r *report.Report) []string {
		var out []string
		for _, f := range r.Findings {
			out = append(out, f.ID+" "+f.Package)
		}
		sort.Strings(out)
		return out
	}
	tests := []struct {
		tag  string
		want []string
	}{
		{"wh:base", ids(full)},
		{"wh:replaced", ids(smallRep)},
		{"wh:deleted", nil},
		{"wh:opaque", nil},
	}
	for _, tt := range tests {
		for _, force := range []bool{false, true} {
			rep := scan(t, source.Docker{Client: d.Client, Ref: tt.tag, ForceSave: force}, store)
			if got := ids(rep); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s (ImageSave %v): %d findings, want %d", tt.tag, force, len(got), len(tt.want))
			}
		}
	}
	if len(ids(smallRep)) == 0 || len(ids(full)) != 261 {
		t.Fatalf("test data: %d and %d findings", len(ids(smallRep)), len(ids(full)))
	}
	// Each finding names the layer that brought its package: the new
	// libgcrypt20 came with the replacing layer, libc6 with the bionic one.
	rep := scan(t, source.Docker{Client: d.Client, Ref: "wh:replaced"}, store)
	layers := rep.Image.Layers
	if len(layers) != 3 {
		t.Fatalf("%d layers", len(layers))
	}
	for _, f := range rep.Findings {
		want := layers[1].DiffID
		if f.Package == "libgcrypt20" {
			want = layers[2].DiffID
		}
		if f.Layer != want {
			t.Fatalf("%s %s attributed to %s, want %s", f.ID, f.Package, f.Layer, want)
		}
	}
}

// TestEscapes: images whose package database is a link to a canary file
// outside the layer; nothing outside is read.
func TestEscapes(t *testing.T) {
	d := harness.StartDocker(t, harness.DockerOptions{})
	if d.Engine.ContainerdStore {
		// The planted links go into overlay2's directories; containerd's
		// snapshot directories are read by the same in-root code.
		t.Skip("overlay2 layer directories only")
	}
	store := openStore(t, stateWith(t, "ubuntu-bionic-oval-2021-08-31.jsonl.zst"))
	canaryDir := harness.TempDir(t, "divds-canary-")
	canary := filepath.Join(canaryDir, "status")
	harness.WriteFile(t, canary, []byte("Package: canary-pkg\nStatus: install ok installed\nVersion: 6.6.6\nArchitecture: amd64\n\n"))

	ctxDir := t.TempDir()
	copyTree(t, filepath.Join(testdata.Path(t, "rootfs", "ubuntu-18.04-bionic"), "etc"), filepath.Join(ctxDir, "etc"))
	os.MkdirAll(filepath.Join(ctxDir, "var/lib/dpkg/info"), 0o755)
	rel, _ := filepath.Rel("/var/lib/dpkg", canary)
	tests := []struct{ tag, link string }{
		{"esc:abs", canary},
		{"esc:rel", rel},
	}
	for _, tt := range tests {
		os.Remove(filepath.Join(ctxDir, "var/lib/dpkg/status"))
		if err := os.Symlink(tt.link, filepath.Join(ctxDir, "var/lib/dpkg/status")); err != nil {
			t.Fatal(err)
		}
		harness.WriteFile(t, filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nCOPY . /\n"))
		d.MustCLI(t, "build", "--network", "none", "-t", tt.tag, ctxDir)
	}
	// A hardlink out of the layer cannot come from a build: make one in
	// the layer directory itself, as a tampered data root would hold.
	os.Remove(filepath.Join(ctxDir, "var/lib/dpkg/status"))
	harness.WriteFile(t, filepath.Join(ctxDir, "var/lib/dpkg/status"), []byte("Package: placeholder\n\n"))
	d.MustCLI(t, "build", "--network", "none", "-t", "esc:hard", ctxDir)
	insp, err := d.Client.ImageInspect(context.Background(), "esc:hard")
	if err != nil {
		t.Fatal(err)
	}
	inLayer := filepath.Join(insp.GraphDriver.Data["UpperDir"], "var/lib/dpkg/status")
	if err := os.Remove(inLayer); err != nil {
		t.Fatal(err)
	}
	// Hardlinks stay within one mount: the data root's overlay2 directory
	// is one, so the canary for this case sits there, outside any layer.
	hardCanary := filepath.Join(d.Dir, "data", "overlay2", "divds-canary-status")
	raw, _ := os.ReadFile(canary)
	harness.WriteFile(t, hardCanary, raw)
	if err := os.Link(hardCanary, inLayer); err != nil {
		t.Fatal(err)
	}

	for _, tag := range []string{"esc:abs", "esc:rel", "esc:hard"} {
		for _, force := range []bool{false, true} {
			rep, _, err := scanner.New(scanner.Options{}).Scan(context.Background(), source.Docker{Client: d.Client, Ref: tag, ForceSave: force}, store)
			if tag == "esc:hard" && force {
				// The daemon itself refuses to save a tampered layer.
				if err == nil || !strings.Contains(err.Error(), "checksum") {
					t.Fatalf("ImageSave of a tampered layer: %v", err)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range rep.Packages {
				if p.Name == "canary-pkg" {
					t.Fatalf("%s (ImageSave %v): the canary outside the layer was read", tag, force)
				}
			}
		}
	}
	if rep := scan(t, source.Docker{Client: d.Client, Ref: "esc:hard"}, store); len(rep.Warnings) == 0 {
		t.Error("the refused hardlink is not reported")
	}
}
