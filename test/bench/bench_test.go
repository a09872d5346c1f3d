// Package bench measures DIVDS against a real, private dockerd: reading
// layers directly against `docker save`, archive scans, rescans from the
// cache, and the latency the plugin adds to every API call. `make bench`
// runs it; the figures are ratios and times taken in one run, never
// assertions.
package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/internal/testdb"
	"github.com/divds/divds/scanner"
	"github.com/divds/divds/scanner/cache"
	"github.com/divds/divds/scanner/layerfs"
	"github.com/divds/divds/scanner/source"
	"github.com/divds/divds/scanner/vulnstore"
	"github.com/divds/divds/test/harness"
)

func importBundle(b *testing.B, dir, name string) { testdb.Import(b, dir, name) }

// bigImage builds a 5-layer image of about 105 MB whose first layer holds
// the bionic package database.
func bigImage(b *testing.B, d *harness.Docker) string {
	b.Helper()
	return sizedImage(b, d, "big:5layers", 21<<20)
}

// sizedImage builds a 5-layer image: the bionic rootfs, then 5 layers of
// per bytes of random data each.
func sizedImage(b *testing.B, d *harness.Docker, tag string, per int) string {
	b.Helper()
	ctx := b.TempDir()
	bionic := testdata.Path(b, "rootfs", "ubuntu-18.04-bionic")
	exec.Command("cp", "-r", bionic, filepath.Join(ctx, "l0")).Run()
	os.MkdirAll(filepath.Join(ctx, "l0/var/lib/dpkg/info"), 0o755)
	rng := rand.NewChaCha8([32]byte{7})
	for i := 0; i < 5; i++ {
		buf := make([]byte, per)
		rng.Read(buf)
		dir := filepath.Join(ctx, fmt.Sprintf("l%d", i), "data")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("blob%d", i)), buf, 0o644)
	}
	df := "FROM scratch\n"
	for i := 0; i < 5; i++ {
		df += fmt.Sprintf("COPY l%d/ /\n", i)
	}
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644)
	d.MustCLI(b, "build", "--network", "none", "-t", tag, ctx)
	return tag
}

// BenchmarkReadAtPull reports the image read a pull's verdict starts
// with, on the engine of DIVDS_E2E_ENGINE (make bench runs it on each):
// a 5-layer image of about 10 MB and one of about 105 MB, read where the
// store keeps its layers (overlay2 directories, or containerd's snapshot
// directories), and the 105 MB one streamed with ImageSave.
func BenchmarkReadAtPull(b *testing.B) {
	d := harness.StartDocker(b, harness.DockerOptions{})
	small := sizedImage(b, d, "small:5layers", 1<<20)
	big := bigImage(b, d)
	stores := &source.StoreFinder{}
	defer stores.Close()
	cs := stores.Find(context.Background(), d.Client)
	for i := 0; i < b.N; i++ {
		for _, img := range []struct{ ref, unit string }{{small, "10MB-ms"}, {big, "105MB-ms"}} {
			// By ID, as the plugin reads what a pull brought.
			insp, err := d.Client.ImageInspect(context.Background(), img.ref)
			if err != nil {
				b.Fatal(err)
			}
			src := source.Docker{Client: d.Client, Ref: insp.ID, Containerd: cs}
			if im, err := src.Read(context.Background(), layerfs.Limits{}, nil); err != nil || len(im.Warnings) > 0 {
				b.Fatalf("read of %s on %s: %v %v", img.ref, d.Engine.Name, err, im.Warnings)
			}
			b.ReportMetric(float64(timeRead(b, src, 5).Microseconds())/1000, img.unit)
		}
		saved := timeRead(b, source.Docker{Client: d.Client, Ref: big, ForceSave: true}, 2)
		b.ReportMetric(float64(saved.Microseconds())/1000, "105MB-imagesave-ms")
	}
}

func timeRead(b *testing.B, src source.Source, n int) time.Duration {
	b.Helper()
	var total time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := src.Read(context.Background(), layerfs.Limits{}, nil); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	return total / time.Duration(n)
}

// BenchmarkLayers reports, for a 5-layer image of about 105 MB in the
// local daemon: reading its layer directories against streaming it with
// ImageSave (the ratio), the scan of its `docker save` archive per 100 MB,
// and a rescan after a database update with its layers cached.
func BenchmarkLayers(b *testing.B) {
	d := harness.StartDocker(b, harness.DockerOptions{})
	ref := bigImage(b, d)
	for i := 0; i < b.N; i++ {
		direct := timeRead(b, source.Docker{Client: d.Client, Ref: ref}, 5)
		saved := timeRead(b, source.Docker{Client: d.Client, Ref: ref, ForceSave: true}, 2)
		b.ReportMetric(float64(direct.Microseconds())/1000, "direct-ms")
		b.ReportMetric(float64(saved.Microseconds())/1000, "imagesave-ms")
		b.ReportMetric(float64(saved)/float64(direct), "save/direct")

		archive := filepath.Join(b.TempDir(), "big.tar")
		d.MustCLI(b, "save", "-o", archive, ref)
		st, _ := os.Stat(archive)
		per := timeRead(b, source.Archive{Path: archive}, 3)
		b.ReportMetric(float64(per.Microseconds())/1000/(float64(st.Size())/100e6), "archive-ms/100MB")

		state := b.TempDir()
		importBundle(b, state, "ubuntu-bionic-oval-2021-08-31.jsonl.zst")
		c, err := cache.Open(state, time.Second, nil)
		if err != nil {
			b.Fatal(err)
		}
		sc := scanner.New(scanner.Options{Cache: c})
		store, _ := vulnstore.Open(vulnstore.Path(state))
		if _, _, err := sc.Scan(context.Background(), source.Docker{Client: d.Client, Ref: ref}, store); err != nil {
			b.Fatal(err)
		}
		store.Close()
		importBundle(b, state, "ubuntu-bionic-oval-2021-08-31.jsonl.zst") // a database update
		store, _ = vulnstore.Open(vulnstore.Path(state))
		start := time.Now()
		rep, stats, err := sc.Scan(context.Background(), source.Docker{Client: d.Client, Ref: ref}, store)
		el := time.Since(start)
		if err != nil || stats.LayersRead != 0 || !stats.IndexCached || rep.Database.Revision != 2 {
			b.Fatalf("rescan: %v, %+v, revision %d", err, stats, rep.Database.Revision)
		}
		b.ReportMetric(float64(el.Microseconds())/1000, "rescan-ms")
		b.ReportMetric(float64(stats.LayersRead), "rescan-layers-read")
		store.Close()
		c.Close()
	}
}

// startAllowAll runs the minimal allow-all plugin (./allowall) in its own
// process, as divds runs in its own.
func startAllowAll(b *testing.B) string {
	b.Helper()
	dir := harness.TempDir(b, "divds-aa-")
	bin := filepath.Join(dir, "allowall")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/divds/divds/test/bench/allowall").CombinedOutput(); err != nil {
		b.Fatalf("build allowall: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "allow.sock")
	harness.Start(b, "allowall", filepath.Join(dir, "allowall.log"), nil, bin, sock)
	harness.WaitFor(b, "the allow-all plugin", 10*time.Second, func() bool { _, err := os.Stat(sock); return err == nil })
	name := fmt.Sprintf("divds-bench-allow-%d", os.Getpid())
	spec := filepath.Join("/etc/docker/plugins", name+".spec")
	harness.WriteFile(b, spec, []byte("unix://"+sock+"\n"))
	b.Cleanup(func() { os.Remove(spec) })
	return name
}

func medianList(b *testing.B, d *harness.Docker, n int) time.Duration {
	b.Helper()
	ctx := context.Background()
	for i := 0; i < 200; i++ { // warm up
		d.Client.ContainerList(ctx, client.ContainerListOptions{})
	}
	durs := make([]time.Duration, n)
	for i := range durs {
		start := time.Now()
		if _, err := d.Client.ContainerList(ctx, client.ContainerListOptions{}); err != nil {
			b.Fatal(err)
		}
		durs[i] = time.Since(start)
	}
	slices.Sort(durs)
	return durs[n/2]
}

// BenchmarkPluginLatency reports the latency of GET /containers/json
// through the same dockerd with a minimal allow-all plugin and with
// divds, and their ratio.
func BenchmarkPluginLatency(b *testing.B) {
	dir := harness.TempDir(b, "divds-d-")
	p := startDivds(b, dir, "alpine-secdb.jsonl.zst", "mode: enforce # the defaults\n")
	allow := startAllowAll(b)
	for i := 0; i < b.N; i++ {
		bare := harness.StartDocker(b, harness.DockerOptions{Dir: dir})
		bareMed := medianList(b, bare, 2000)
		bare.Stop()
		d := harness.StartDocker(b, harness.DockerOptions{Dir: dir, AuthzPlugins: []string{allow}})
		allowMed := medianList(b, d, 2000)
		d.Stop()
		d = harness.StartDocker(b, harness.DockerOptions{Dir: dir, AuthzPlugins: []string{p.Name}})
		divdsMed := medianList(b, d, 2000)
		d.Stop()
		b.ReportMetric(float64(bareMed.Microseconds())/1000, "bare-ms")
		b.ReportMetric(float64(allowMed.Microseconds())/1000, "allowall-ms")
		b.ReportMetric(float64(divdsMed.Microseconds())/1000, "divds-ms")
		b.ReportMetric(float64(divdsMed)/float64(allowMed), "divds/allowall")
	}
}

// startDivds starts divds with a database of bundle and the policy
// given, for the dockerd of directory dir.
func startDivds(b *testing.B, dir, bundle, policy string) *harness.Plugin {
	b.Helper()
	rs := harness.StartRsyslog(b)
	state := b.TempDir()
	importBundle(b, state, bundle)
	path := filepath.Join(b.TempDir(), "policy.yaml")
	harness.WriteFile(b, path, []byte(policy))
	return harness.StartPlugin(b, harness.PluginOptions{Bin: buildDivds(b), StateDir: state, Policy: path,
		DockerHost: "unix://" + filepath.Join(dir, "docker.sock"), Syslog: "unixgram://" + rs.Sock})
}

func buildDivds(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "divds-authz")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/divds/divds/cmd/divds-authz").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// BenchmarkPull reports `docker pull` of the 5-layer, 105 MB image from a
// local registry through the same dockerd (of DIVDS_E2E_ENGINE) without
// a plugin and with divds, whose verdict on the pulled image is part of
// the pull (the response phase decides it), and their ratio.
func BenchmarkPull(b *testing.B) {
	reg := harness.StartRegistry(b)
	dir := harness.TempDir(b, "divds-d-")
	// The image must pass, or the plugin removes it: the measure is of a
	// pull that stays.
	p := startDivds(b, dir, "ubuntu-bionic-oval-2021-08-31.jsonl.zst", "mode: enforce\nthreshold: 100000\n")
	remote := reg.Addr + "/big:5layers"
	bare := harness.StartDocker(b, harness.DockerOptions{Dir: dir})
	bare.MustCLI(b, "tag", bigImage(b, bare), remote)
	bare.MustCLI(b, "push", remote)
	pull := func(d *harness.Docker) time.Duration {
		var durs []time.Duration
		for range 3 {
			// Every image goes, the build's intermediate ones too: on the
			// containerd store they hold the layers' content, and the pull
			// would download nothing.
			d.CLI(context.Background(), "rmi", "-f", remote, "big:5layers")
			d.CLI(context.Background(), "image", "prune", "-af")
			start := time.Now()
			d.MustCLI(b, "pull", remote)
			durs = append(durs, time.Since(start))
		}
		slices.Sort(durs)
		return durs[1]
	}
	for i := 0; i < b.N; i++ {
		bareMed := pull(bare)
		bare.Stop()
		d := harness.StartDocker(b, harness.DockerOptions{Dir: dir, AuthzPlugins: []string{p.Name}})
		divdsMed := pull(d)
		d.Stop()
		b.ReportMetric(float64(bareMed.Milliseconds()), "bare-pull-ms")
		b.ReportMetric(float64(divdsMed.Milliseconds()), "divds-pull-ms")
		b.ReportMetric(float64(divdsMed)/float64(bareMed), "divds/bare")
		bare = harness.StartDocker(b, harness.DockerOptions{Dir: dir})
	}
}
