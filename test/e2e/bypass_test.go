package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/test/harness"
)

// The bypass classes of issue #9, each shown on the real daemon: a gate
// that judged one thing while the daemon acted on another. Every row was
// red with the build before its fix (DIVDS_E2E_BIN runs these tests
// against another build).

// TestBypassContainerNames: dockerd's container routes take {name:.*}, so
// a link alias ("web/dbalias") names the linked container. Start,
// restart and exec are decided by the image ID of the container the
// daemon resolves, whatever form its name takes.
func TestBypassContainerNames(t *testing.T) {
	// Legacy links need the default bridge: this dockerd has a network
	// namespace of its own, so the host's network is not touched.
	g := startGateWith(t, "mode: audit\n", harness.DockerOptions{OwnNetwork: true})
	defer g.dumpOnFailure(t)
	g.d.MustCLI(t, "import", g.runnableVulnTar(t), "vulnrun:1")
	g.importAlpine(t, "clean:local")
	g.d.MustCLI(t, "run", "-d", "--name", "db", "vulnrun:1", "sleep", "1000")
	g.d.MustCLI(t, "run", "-d", "--name", "ok", "clean:local", "sleep", "1000")
	g.d.MustCLI(t, "run", "-d", "--name", "web", "--link", "db:dbalias", "--link", "ok:okalias", "clean:local", "sleep", "1000")
	g.reload(t, "")
	running := func(name string) bool {
		out, err := g.cli("inspect", "--format", "{{.State.Running}}", name)
		return err == nil && strings.TrimSpace(out) == "true"
	}

	t.Run("exec", func(t *testing.T) {
		if out, err := g.cli("exec", "ok", "true"); err != nil {
			t.Fatalf("exec in the clean container: %v\n%s", err, out)
		}
		out, err := g.cli("exec", "db", "true")
		mustFail(t, "exec in a container of a denied image", out, err, "exec of vulnrun:1 denied", "image score")
		body := []byte(`{"Cmd":["true"],"AttachStdout":true}`)
		json := map[string]string{"Content-Type": "application/json"}
		if code, out := rawRequest(t, g.d.Sock, "POST /v1.41/containers/web/okalias/exec", json, body, false); code != http.StatusCreated {
			t.Fatalf("exec through the clean alias: %d %s: the form proves nothing", code, out)
		}
		if code, out := rawRequest(t, g.d.Sock, "POST /v1.41/containers/web/dbalias/exec", json, body, false); code != http.StatusForbidden {
			t.Fatalf("exec through a link alias of a denied container: %d %s", code, out)
		}
	})
	// The raw forms the daemon routes alike: each reaches the daemon for
	// the clean container, and is refused for the denied one.
	old := oldestAPI(g.d)
	execForms := []struct{ name, line string }{
		{"no version prefix", "POST /containers/%s/exec"},
		{"percent-encoded path", "POST /v1.41/%%63ontainers/%s/%%65xec"},
		{"absolute URI", "POST http://localhost/v1.41/containers/%s/exec"},
		{"three-part version", "POST /v1.40.5/containers/%s/exec"},
		{"old API version", "POST /" + old + "/containers/%s/exec"},
		{"link alias, encoded slash", "POST /v1.41/containers/web%%2F%s/exec"},
	}
	for _, f := range execForms {
		t.Run("exec/"+f.name, func(t *testing.T) {
			body := []byte(`{"Cmd":["true"]}`)
			json := map[string]string{"Content-Type": "application/json"}
			clean, denied := "ok", "db"
			if strings.Contains(f.name, "alias") {
				clean, denied = "okalias", "dbalias"
			}
			if code, out := rawRequest(t, g.d.Sock, fmt.Sprintf(f.line, clean), json, body, false); code != http.StatusCreated {
				t.Fatalf("the form did not reach the clean container (%d %s): it proves nothing", code, out)
			}
			if code, out := rawRequest(t, g.d.Sock, fmt.Sprintf(f.line, denied), json, body, false); code != http.StatusForbidden {
				t.Fatalf("exec in a container of a denied image: %d %s", code, out)
			}
		})
	}
	for _, verb := range []string{"start", "restart"} {
		t.Run(verb+" through a link alias", func(t *testing.T) {
			g.d.MustCLI(t, "stop", "-t", "1", "db", "ok")
			if code, out := rawRequest(t, g.d.Sock, "POST /v1.41/containers/web/okalias/"+verb, nil, nil, false); code != http.StatusNoContent || !running("ok") {
				t.Fatalf("%s through the clean alias: %d %s: the form proves nothing", verb, code, out)
			}
			code, out := rawRequest(t, g.d.Sock, "POST /v1.41/containers/web/dbalias/"+verb, nil, nil, false)
			if running("db") || code != http.StatusForbidden {
				t.Fatalf("%s through a link alias started a container of a denied image: %d %s", verb, code, out)
			}
		})
	}
}

// moveTagLoop moves tag between the clean and the denied image every few
// milliseconds until the returned stop is called (stop waits for the
// loop to end). The pause is pacing, not synchronisation: a loop without
// one holds the repository so constantly (each tag is a change under way)
// that no push could ever start, and the race would prove nothing.
func (g *gate) moveTagLoop(ctx context.Context, tag string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			src := "clean:local"
			if i%2 == 1 {
				src = "bionic:local"
			}
			g.d.Client.ImageTag(ctx, client.ImageTagOptions{Source: src, Target: tag})
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() { close(done); wg.Wait() }
}

// TestBypassCreateRace: the create gate judges a name, and the name can
// be moved to a denied image before the daemon creates the container.
// Tag moves race creates for a fixed number of tries; no container of the
// denied image may survive, and every create that succeeded runs the
// clean image.
func TestBypassCreateRace(t *testing.T) {
	g := startGate(t, "")
	defer g.dumpOnFailure(t)
	g.importBionic(t, "bionic:local")
	g.importAlpine(t, "clean:local")
	ctx := context.Background()
	ids := map[string]string{}
	for _, ref := range []string{"bionic:local", "clean:local"} {
		insp, err := g.d.Client.ImageInspect(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		ids[ref] = insp.ID
	}
	// 60 tries, and more (up to 300) until one create succeeds: on the
	// containerd store a tag move is not atomic, and most creates that
	// race it fail in the daemon, which proves nothing either way.
	const tries, most = 60, 300
	stop := g.moveTagLoop(ctx, "race:1")
	var created []string
	for i := 0; i < most && (i < tries || len(created) == 0); i++ {
		res, err := g.d.Client.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{Image: "race:1", Cmd: []string{"/bin/true"}}})
		if err == nil {
			created = append(created, res.ID)
		}
	}
	stop()
	if len(created) == 0 {
		t.Fatal("no create succeeded: the race proves nothing")
	}
	list, err := g.d.Client.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, c := range list.Items {
		if c.ImageID == ids["bionic:local"] {
			bad = append(bad, c.ID[:12])
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%d of %d tries left containers of the denied image: %v", len(bad), tries, bad)
	}
	for _, id := range created {
		c, err := g.d.Client.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil || c.Container.Image != ids["clean:local"] {
			t.Fatalf("create answered %s, which runs %s (%v)", id[:12], c.Container.Image, err)
		}
	}
	t.Logf("%d tries, %d creates of the clean image, none of the denied one", tries, len(created))
}

// TestRefusedRoutes: routes that bring in or run images no gate can see
// are refused unless the policy allows them.
func TestRefusedRoutes(t *testing.T) {
	g := startGate(t, "")
	defer g.dumpOnFailure(t)
	listen := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	t.Run("swarm init", func(t *testing.T) {
		out, err := g.cli("swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", listen)
		if err == nil {
			g.cli("swarm", "leave", "--force")
		}
		mustFail(t, "swarm init", out, err, "refused", "allow_swarm_join")
	})
	// The raw forms the daemon routes alike, each refused (403) before the
	// daemon acts: a swarm init through them made this node a manager.
	forms := []struct{ name, line string }{
		{"no version prefix", "POST /%s"},
		{"percent-encoded path", "POST /v1.41/%s"},
		{"absolute URI", "POST http://localhost/v1.41/%s"},
		{"three-part version", "POST /v1.40.5/%s"},
	}
	for _, route := range []struct{ path, encoded string }{{"swarm/init", "%73warm/%69nit"}, {"plugins/create?name=p", "%70lugins/%63reate?name=p"}} {
		for _, f := range forms {
			t.Run(route.path+"/"+f.name, func(t *testing.T) {
				p := route.path
				if strings.Contains(f.name, "encoded") {
					p = route.encoded
				}
				code, out := rawRequest(t, g.d.Sock, fmt.Sprintf(f.line, p), map[string]string{"Content-Type": "application/json"},
					[]byte(`{"ListenAddr":"`+listen+`","AdvertiseAddr":"127.0.0.1"}`), false)
				if code != http.StatusForbidden {
					g.cli("swarm", "leave", "--force")
					t.Fatalf("%s: %d %s", route.path, code, out)
				}
			})
		}
	}
	t.Run("plugin create", func(t *testing.T) {
		root := t.TempDir()
		untarGz(t, testdata.Path(t, "images", "alpine-minirootfs-3.7.3-x86_64.tar.gz"), root)
		out, err := g.cli("plugin", "create", "local/plug:1", pluginDir(t, root))
		mustFail(t, "plugin create", out, err, "refused", "allow_plugin_admin")
		if out := g.d.MustCLI(t, "plugin", "ls", "-q"); strings.TrimSpace(out) != "" {
			t.Fatalf("a plugin was created: %s", out)
		}
	})
	t.Run("build", func(t *testing.T) {
		dir := t.TempDir()
		harness.WriteFile(t, filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nLABEL x=1\n"))
		g.d.MustCLI(t, "build", "--network", "none", "-t", "built:1", dir)
		g.reload(t, "allow_build: false\n")
		out, err := g.cli("build", "--network", "none", "-t", "built:2", dir)
		mustFail(t, "build under allow_build: false", out, err, "refused", "allow_build")
	})
}

// TestBypassPushRace: the push gate judges the image a tag names, and the
// tag can be moved to a denied image before the daemon resolves it. Tag
// moves race pushes for a fixed number of tries; the registry must never
// hold the denied image under the pushed name.
func TestBypassPushRace(t *testing.T) {
	g := startGate(t, "")
	defer g.dumpOnFailure(t)
	g.importBionic(t, "bionic:local")
	g.importAlpine(t, "clean:local")
	ctx := context.Background()
	denied, err := g.d.Client.ImageInspect(ctx, "bionic:local")
	if err != nil {
		t.Fatal(err)
	}
	target := g.reg.Addr + "/racepush:1"
	g.d.MustCLI(t, "tag", "clean:local", target)
	// pushedDenied tells whether the registry holds the denied image: by
	// its config digest (the classic store's image ID) or by its manifest
	// digest (the containerd store's).
	pushedDenied := func() bool {
		req, _ := http.NewRequest("GET", "http://"+g.reg.Addr+"/v2/racepush/manifests/1", nil)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m struct {
			Config struct{ Digest string } `json:"config"`
		}
		json.NewDecoder(res.Body).Decode(&m)
		return m.Config.Digest == denied.ID || res.Header.Get("Docker-Content-Digest") == denied.ID
	}
	// 15 tries, and more (up to 80) until one push succeeds: on the
	// containerd store a tag move is not atomic, and a push racing it
	// often fails in the daemon, which proves nothing either way.
	const tries, most = 15, 80
	stop := g.moveTagLoop(ctx, target)
	pushed, i := 0, 0
	for ; i < most && (i < tries || pushed == 0); i++ {
		if _, err := g.cli("push", target); err == nil {
			pushed++
		}
		if pushedDenied() {
			stop()
			t.Fatalf("try %d: the registry holds the denied image under %s", i, target)
		}
	}
	stop()
	if pushed == 0 {
		t.Fatal("no push succeeded: the race proves nothing")
	}
	t.Logf("%d tries, %d pushes, the denied image never reached the registry", i, pushed)
}

// TestBypassScopedNames: a policy entry scoped to a repository must not
// apply to an image that was only tagged with its name: docker tag is
// open to every user. It applies to the image pulled from there.
func TestBypassScopedNames(t *testing.T) {
	g := startGate(t, "")
	defer g.dumpOnFailure(t)
	vuln, _ := g.seedBoth(t, "/clean:1")
	repo := g.reg.Addr + "/bionic"
	g.reload(t, "overrides:\n  - images: ['"+repo+"']\n    threshold: 100000\n")
	// The image that came from the repository: the override applies.
	g.d.MustCLI(t, "pull", vuln)
	if !g.present(vuln) {
		t.Fatal("the pulled image was removed: the override does not apply to it, so this proves nothing")
	}
	g.d.MustCLI(t, "create", vuln, "/bin/true")
	// Another image, tagged with the repository's name on this host.
	g.importBionic(t, "local:1")
	g.d.MustCLI(t, "tag", "local:1", repo+":forged")
	out, err := g.cli("create", repo+":forged", "/bin/true")
	mustFail(t, "create of a locally tagged image under a repository's override", out, err, "denied", "threshold 200.00")
}

// TestBypassBuildBase: a classic build pulls its base image without
// /images/create, so no pull gate sees it. The daemon's pull event does:
// a failing base is removed and quarantined as after a docker pull, and
// the image built on it does not run.
func TestBypassBuildBase(t *testing.T) {
	g := startGate(t, "")
	defer g.dumpOnFailure(t)
	vuln, clean := g.seedBoth(t, "/clean:1")
	dir := t.TempDir()
	build := func(tag, base string) (string, error) {
		harness.WriteFile(t, filepath.Join(dir, "Dockerfile"), []byte("FROM "+base+"\nLABEL built=1\n"))
		return g.cli("build", "--network", "none", "-t", tag, dir)
	}
	if out, err := build("onclean:1", clean); err != nil {
		t.Fatalf("build on the clean base: %v\n%s", err, out)
	}
	// The base is removed as soon as it is pulled: the build then fails
	// ("unknown parent image ID") or, when its steps won the race, makes
	// an image that is checked below.
	out, err := build("onvuln:1", vuln)
	t.Logf("build on the failing base: %v\n%s", err, out)
	harness.WaitFor(t, "the failing base's removal", 60*time.Second, func() bool { return !g.present(vuln) })
	if !g.present(clean) {
		t.Fatal("the clean base was removed")
	}
	quarantined := false
	for _, q := range g.status(t).Quarantined {
		quarantined = quarantined || slices.Contains(q.Refs, vuln)
	}
	if !quarantined {
		t.Fatal("the failing base is not quarantined")
	}
	if g.present("onvuln:1") {
		out, err := g.cli("create", "onvuln:1")
		mustFail(t, "create of the image built on the failing base", out, err, "denied", "image score")
	}
}

// TestPullReplayedAfterOutage: a pull that ended while the plugin was down
// never reached its response phase. The plugin keeps the time of the last
// daemon event it handled and, at its start, replays the events since:
// the failing image is removed then. (The daemon here has no authz plugin
// configured, so that it answers while the plugin is down.)
func TestPullReplayedAfterOutage(t *testing.T) {
	g := startGateWith(t, "", harness.DockerOptions{AuthzPlugins: []string{}})
	defer g.dumpOnFailure(t)
	vuln, _ := g.seedBoth(t, "/clean:1")
	g.importAlpine(t, "before:1")
	harness.WaitFor(t, "an event handled", 30*time.Second, func() bool { return g.p.Metric("divds_scans_total") >= 1 })
	g.p.Proc.Stop()
	g.d.MustCLI(t, "pull", vuln)
	g.p.Restart()
	harness.WaitFor(t, "the removal of the image pulled during the outage", 60*time.Second, func() bool { return !g.present(vuln) })
}

// TestBypassHiddenPackageDatabase: FROM a denied image, a COPY of an
// empty dpkg status (no RUN step) keeps every file of the image, and the
// image scored 0. Packages an earlier layer's database lists whose dpkg
// file lists remain count as installed, read from the layer directories
// and from docker save alike.
func TestBypassHiddenPackageDatabase(t *testing.T) {
	g := startGate(t, "")
	defer g.dumpOnFailure(t)
	ctxDir := t.TempDir()
	root := filepath.Join(ctxDir, "bionic")
	copyTree(t, testdata.Path(t, "rootfs", "ubuntu-18.04-bionic"), root)
	status, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		t.Fatal(err)
	}
	// dpkg keeps one file list per installed package.
	info := filepath.Join(root, "var/lib/dpkg/info")
	os.MkdirAll(info, 0o755)
	for _, line := range strings.Split(string(status), "\n") {
		if name, ok := strings.CutPrefix(line, "Package: "); ok {
			harness.WriteFile(t, filepath.Join(info, name+".list"), []byte("/.\n"))
		}
	}
	harness.WriteFile(t, filepath.Join(ctxDir, "empty-status"), nil)
	harness.WriteFile(t, filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nCOPY bionic/ /\nCOPY empty-status /var/lib/dpkg/status\n"))
	g.d.MustCLI(t, "build", "--network", "none", "-t", "hidden:1", ctxDir)
	out, err := g.cli("create", "hidden:1", "/bin/true")
	mustFail(t, "create of an image whose package database was emptied", out, err, "denied", "image score "+bionicScore)
	for _, force := range []string{"", "--force-save"} {
		args := []string{"--state-dir", g.p.StateDir, "--log-level", "error", "scan", "--docker-host", g.d.Host, "hidden:1"}
		if force != "" {
			args = append(args, force)
		}
		out, _ := harness.Run(t.Context(), nil, bin, args...)
		if !strings.Contains(out, "image score "+bionicScore) || !strings.Contains(out, "no longer lists 88 packages") {
			t.Fatalf("scan %s:\n%s", force, out)
		}
	}
}

// TestBypassRenameRace: the start gate resolves a container name, and the
// daemon resolves it again. Renames that swap a clean container's name
// onto a container of a denied image race starts of that name for a fixed
// number of tries; the denied container must never start.
func TestBypassRenameRace(t *testing.T) {
	g := startGate(t, "mode: audit\n")
	defer g.dumpOnFailure(t)
	g.d.MustCLI(t, "import", g.runnableVulnTar(t), "vulnrun:1")
	g.importAlpine(t, "clean:local")
	g.d.MustCLI(t, "create", "--name", "app", "--network", "none", "clean:local", "true")
	denied := strings.TrimSpace(g.d.MustCLI(t, "create", "--name", "bad", "--network", "none", "vulnrun:1", "true"))
	g.reload(t, "")
	ctx := context.Background()
	rename := func(from, to string) error {
		_, err := g.d.Client.ContainerRename(ctx, from, client.ContainerRenameOptions{NewName: to})
		return err
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			// Swap the names. A rename refused while a start is decided
			// is retried, so that the names always end up whole again.
			settle := func(from, to string) {
				deadline := time.Now().Add(30 * time.Second) // a hold lasts 30 s at most
				for rename(from, to) != nil && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
			}
			if rename("app", "tmpx") == nil {
				if rename("bad", "app") == nil {
					settle("tmpx", "bad")
				} else {
					settle("tmpx", "app")
				}
			}
			// Pacing, as in moveTagLoop: while the names are swapped,
			// "app" is missing or the denied container, and a loop without
			// a pause leaves no start a clean "app" to find.
			time.Sleep(20 * time.Millisecond)
		}
	}()
	const tries = 60
	started := 0
	var lastErr error
	for range tries {
		if _, err := g.d.Client.ContainerStart(ctx, "app", client.ContainerStartOptions{}); err == nil {
			started++
		} else {
			lastErr = err
		}
	}
	close(done)
	wg.Wait()
	res, err := g.d.Client.ContainerInspect(ctx, denied, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Container; !strings.HasPrefix(c.State.StartedAt, "0001-") {
		t.Fatalf("the container of the denied image started at %s", c.State.StartedAt)
	}
	if started == 0 {
		t.Fatalf("no start succeeded (the last: %v): the race proves nothing", lastErr)
	}
	t.Logf("%d tries, %d starts of the clean container, none of the denied one", tries, started)
}
