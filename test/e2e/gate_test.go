package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/report"
	"github.com/divds/divds/test/harness"
)

// bionicScore is the default-policy score of the bionic rootfs: 261
// findings (high 11, medium 99, low 109, negligible 42).
const bionicScore = "866.00"

// gate is a private dockerd gated by divds, with a registry and rsyslog.
type gate struct {
	d      *harness.Docker
	p      *harness.Plugin
	reg    *harness.Registry
	rs     *harness.Rsyslog
	policy string
	tars   string
}

func startGate(t *testing.T, policy string) *gate {
	t.Helper()
	return startGateWith(t, policy, harness.DockerOptions{})
}

// startGateWith starts a gate whose dockerd has the given options (its
// directory is the gate's, and so are its plugins unless the options
// name an empty list).
func startGateWith(t *testing.T, policy string, dopts harness.DockerOptions) *gate {
	t.Helper()
	g := &gate{rs: harness.StartRsyslog(t), reg: harness.StartRegistry(t)}
	dir := harness.TempDir(t, "divds-g-")
	g.policy = filepath.Join(dir, "policy.yaml")
	g.tars = dir
	harness.WriteFile(t, g.policy, policyFile(policy))
	dockerDir := harness.TempDir(t, "divds-d-")
	g.p = harness.StartPlugin(t, harness.PluginOptions{
		Bin: bin, StateDir: stateWith(t, "ubuntu-bionic-oval-2021-08-31.jsonl.zst", "alpine-secdb.jsonl.zst"),
		Policy: g.policy, DockerHost: "unix://" + filepath.Join(dockerDir, "docker.sock"), Syslog: "unixgram://" + g.rs.Sock,
	})
	dopts.Dir = dockerDir
	if dopts.AuthzPlugins == nil { // an empty list: the plugin only follows events
		dopts.AuthzPlugins = []string{g.p.Name}
	}
	g.d = harness.StartDocker(t, dopts)
	return g
}

// importBionic imports the bionic rootfs as a vulnerable image.
func (g *gate) importBionic(t *testing.T, tag string) {
	t.Helper()
	g.d.MustCLI(t, "import", g.bionicTar(t), tag)
}

func (g *gate) importAlpine(t *testing.T, tag string) {
	t.Helper()
	g.d.MustCLI(t, "import", testdata.Path(t, "images", "alpine-minirootfs-3.7.3-x86_64.tar.gz"), tag)
}

// seedRegistry writes an image straight into the registry, bypassing
// the gated daemon, as another host would have pushed it.
func (g *gate) seedRegistry(t *testing.T, layerTar, ref string) {
	t.Helper()
	layer, err := tarball.LayerFromFile(layerTar)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mustConfig(t), layer)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("seed %s: %v", ref, err)
	}
}

// seedBoth seeds the registry with the vulnerable image as bionic:vuln
// and the clean one under cleanPath, and returns both references.
func (g *gate) seedBoth(t *testing.T, cleanPath string) (vuln, clean string) {
	t.Helper()
	vuln, clean = g.reg.Addr+"/bionic:vuln", g.reg.Addr+cleanPath
	g.seedRegistry(t, g.bionicTar(t), vuln)
	g.seedRegistry(t, g.alpineTar(t), clean)
	return vuln, clean
}

// bionicTar and alpineTar write (once per test) the layer tars of the
// vulnerable and the clean image.
func (g *gate) bionicTar(t *testing.T) string {
	p := filepath.Join(g.tars, "bionic.tar")
	if _, err := os.Stat(p); err != nil {
		tarDir(t, testdata.Path(t, "rootfs", "ubuntu-18.04-bionic"), p)
	}
	return p
}

func (g *gate) alpineTar(t *testing.T) string {
	p := filepath.Join(g.tars, "alpine.tar")
	if _, err := os.Stat(p); err != nil {
		root := t.TempDir()
		untarGz(t, testdata.Path(t, "images", "alpine-minirootfs-3.7.3-x86_64.tar.gz"), root)
		tarDir(t, root, p)
	}
	return p
}

func mustConfig(t *testing.T) v1.Image {
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers"}, Config: v1.Config{Cmd: []string{"/bin/true"}}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func (g *gate) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return g.d.CLI(ctx, args...)
}

func (g *gate) present(ref string) bool {
	_, err := g.d.Client.ImageInspect(context.Background(), ref)
	return err == nil
}

// policyFile is the file for a policy; "" stands for the defaults, which
// an empty file no longer means (an empty policy is refused).
func policyFile(policy string) []byte {
	if policy == "" {
		policy = "mode: enforce # the defaults\n"
	}
	return []byte(policy)
}

func (g *gate) reload(t *testing.T, policy string) {
	t.Helper()
	harness.WriteFile(t, g.policy, policyFile(policy))
	if err := g.p.Proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	digest := policyDigest(t, g.policy)
	harness.WaitFor(t, "the policy reload", 20*time.Second, func() bool {
		return strings.Contains(g.p.Proc.Tail(), digest)
	})
}

func policyDigest(t *testing.T, path string) string {
	out, err := harness.Run(context.Background(), nil, bin, "policy", "check", path)
	if err != nil {
		t.Fatalf("policy check: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`digest (sha256:[0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no digest in %s", out)
	}
	return m[1]
}

// statusView is the part of `divds-authz status --format json` the
// tests read.
type statusView struct {
	Quarantined   []struct{ Refs []string }
	RunningDenied []struct{ Name, Summary string } `json:"running_denied"`
}

// status asks the plugin for its state with `divds-authz status`, in
// both formats.
func (g *gate) status(t *testing.T) statusView {
	t.Helper()
	table, err := harness.Run(context.Background(), nil, bin, "status", "--socket", g.p.Sock)
	if err != nil || !strings.Contains(table, "Quarantined images:") || !strings.Contains(table, "Running containers of denied images:") {
		t.Fatalf("status: %v\n%s", err, table)
	}
	raw, err := harness.Run(context.Background(), nil, bin, "status", "--socket", g.p.Sock, "--format", "json")
	if err != nil {
		t.Fatalf("status --format json: %v\n%s", err, raw)
	}
	t.Log(table)
	var st statusView
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatalf("status --format json: %v\n%s", err, raw)
	}
	return st
}

// dumpOnFailure logs the plugin's log, with its goroutines, when the
// test failed.
func (g *gate) dumpOnFailure(t *testing.T) {
	if !t.Failed() {
		return
	}
	// A Go process writes its goroutines and exits on SIGQUIT.
	g.p.Proc.Signal(syscall.SIGQUIT)
	for deadline := time.Now().Add(10 * time.Second); !g.p.Proc.Exited() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(g.p.Proc.Log)
	t.Log(string(b))
}

func mustFail(t *testing.T, what, out string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded:\n%s", what, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("%s: output lacks %q:\n%s", what, w, out)
		}
	}
}

func TestPushGate(t *testing.T) {
	g := startGate(t, "")
	g.importBionic(t, "bionic:vuln")
	g.importAlpine(t, "alpine-mini:3.7.3")
	vuln, clean := g.reg.Addr+"/bionic:vuln", g.reg.Addr+"/alpine-mini:3.7.3"
	g.d.MustCLI(t, "tag", "bionic:vuln", vuln)
	g.d.MustCLI(t, "tag", "alpine-mini:3.7.3", clean)
	out, err := g.cli("push", vuln)
	mustFail(t, "push of the vulnerable image", out, err, "push of "+vuln+" denied: image score "+bionicScore+" > threshold 200.00", "divds-authz scan")
	if out, err := g.cli("push", clean); err != nil {
		t.Fatalf("push of the clean image: %v\n%s", err, out)
	}
	// Pushing every tag of a repository is gated too.
	out, err = g.cli("push", "--all-tags", g.reg.Addr+"/bionic")
	mustFail(t, "push --all-tags", out, err, "denied")

	// Metrics and health.
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
		res, err := http.Get("http://" + g.p.MetricsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("%s: %d %s", path, res.StatusCode, body)
		}
	}
	if n := g.p.Metric(`divds_decisions_total{action="push",decision="deny"}`); n < 2 {
		t.Fatalf("divds_decisions_total for denied pushes: %v", n)
	}
	if age := g.p.Metric("divds_database_age_seconds"); age <= 0 {
		t.Fatalf("divds_database_age_seconds %v", age)
	}
}

func TestPullGate(t *testing.T) {
	g := startGate(t, "")
	vuln, clean := g.seedBoth(t, "/alpine-mini:3.7.3")

	// The CLI reports a streamed pull as done: the deny comes after the
	// layers. What counts is that the image is gone and cannot run.
	g.cli("pull", vuln)
	if g.present(vuln) {
		t.Fatalf("the vulnerable image is still present after the pull; plugin log:\n%s", g.p.Proc.Tail())
	}
	out, _ := g.cli("images")
	if strings.Contains(out, g.reg.Addr+"/bionic") {
		t.Fatalf("docker images still lists it:\n%s", out)
	}
	out, err := g.cli("run", "--rm", "--network", "none", vuln)
	mustFail(t, "run of the vulnerable image", out, err, "divds", "denied")
	// The admin sees the quarantine.
	if st := g.status(t); len(st.Quarantined) != 1 || !slices.Contains(st.Quarantined[0].Refs, vuln) {
		t.Fatalf("status lists the quarantine as %+v", st.Quarantined)
	}
	if out, err := g.cli("pull", clean); err != nil {
		t.Fatalf("pull of the clean image: %v\n%s", err, out)
	}
	if out, err := g.cli("run", "--rm", "--network", "none", clean, "/bin/true"); err != nil {
		t.Fatalf("run of the clean image: %v\n%s", err, out)
	}

	// docker pull --all-tags: every tag of the failing image goes, the
	// clean tag stays.
	repo := g.reg.Addr + "/alltags"
	g.seedRegistry(t, g.bionicTar(t), repo+":v1")
	g.seedRegistry(t, g.bionicTar(t), repo+":v2")
	g.seedRegistry(t, g.alpineTar(t), repo+":ok")
	g.cli("pull", "--all-tags", repo)
	for _, tag := range []string{"v1", "v2"} {
		if g.present(repo + ":" + tag) {
			t.Errorf("%s:%s is still present after an all-tags pull", repo, tag)
		}
	}
	if !g.present(repo + ":ok") {
		t.Error("the clean tag of an all-tags pull was removed")
	}
}

// approveUntilUnder returns a whitelist that approves the heaviest CVEs
// until the report's score is at most θ.
func approveUntilUnder(t *testing.T, reportJSON []byte) string {
	t.Helper()
	var rep report.Report
	if err := json.Unmarshal(reportJSON, &rep); err != nil {
		t.Fatal(err)
	}
	weight := map[string]float64{"critical": 9.5, "high": 7.95, "medium": 5.45, "low": 2, "negligible": 0.5}
	byCVE := map[string]float64{}
	total := 0.0
	for _, f := range rep.Findings {
		byCVE[f.ID] += weight[f.Severity]
		total += weight[f.Severity]
	}
	ids := make([]string, 0, len(byCVE))
	for id := range byCVE {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return byCVE[ids[i]] > byCVE[ids[j]] })
	var b strings.Builder
	b.WriteString("whitelist:\n")
	for _, id := range ids {
		if total <= 200 {
			break
		}
		total -= byCVE[id]
		fmt.Fprintf(&b, "  - id: %s\n    reason: e2e test\n", id)
	}
	return b.String()
}

func TestLoadAndPolicyChanges(t *testing.T) {
	g := startGate(t, "")
	g.importBionic(t, "bionic:vuln")
	archive := filepath.Join(g.tars, "bionic-save.tar")
	g.d.MustCLI(t, "save", "-o", archive, "bionic:vuln")
	g.d.MustCLI(t, "rmi", "bionic:vuln")
	g.d.MustCLI(t, "load", "-i", archive)
	out, err := g.cli("create", "bionic:vuln", "/bin/true")
	mustFail(t, "run of a loaded vulnerable image", out, err, "run of bionic:vuln denied: image score "+bionicScore)

	g.d.MustCLI(t, "load", "-i", testdata.Path(t, "images", "alpine-3.10.4.docker-save.tar.gz"))
	if out, err := g.cli("run", "--rm", "--network", "none", "alpine:3.10", "/bin/true"); err != nil {
		t.Fatalf("run of alpine 3.10.4: %v\n%s", err, out)
	}

	// Approve enough CVEs to bring bionic under θ; SIGHUP, no restart.
	// The plugin holds its state directory: scan with a copy of its database.
	scanState := t.TempDir()
	raw, _ := os.ReadFile(filepath.Join(g.p.StateDir, "vuln.db"))
	os.WriteFile(filepath.Join(scanState, "vuln.db"), raw, 0o600)
	rep, err := harness.Run(context.Background(), nil, bin, "--state-dir", scanState, "--policy", g.policy, "scan", "--docker-host", g.d.Host, "bionic:vuln", "--format", "json")
	if !strings.Contains(rep, `"schema_version"`) {
		t.Fatalf("scan: %v\n%s", err, rep)
	}
	jsonStart := strings.Index(rep, "{")
	g.reload(t, approveUntilUnder(t, []byte(rep[jsonStart:])))
	if out, err := g.cli("create", "bionic:vuln", "/bin/true"); err != nil {
		t.Fatalf("create after approving findings: %v\n%s\nplugin:\n%s", err, out, g.p.Proc.Tail())
	}

	// Audit mode allows everything and still audits. This reload comes
	// from the file changing, with no signal.
	g.d.MustCLI(t, "tag", "bionic:vuln", "bionic:audit")
	harness.WriteFile(t, g.policy, []byte("mode: audit\n"))
	digest := policyDigest(t, g.policy)
	harness.WaitFor(t, "the reload on a file change", 20*time.Second, func() bool {
		return strings.Contains(g.p.Proc.Tail(), "policy reloaded (file changed)") && strings.Contains(g.p.Proc.Tail(), digest)
	})
	before := len(g.rs.Lines())
	if out, err := g.cli("create", "bionic:audit", "/bin/true"); err != nil {
		t.Fatalf("create in audit mode: %v\n%s", err, out)
	}
	harness.WaitFor(t, "the audit record", 20*time.Second, func() bool {
		for _, l := range g.rs.Lines()[before:] {
			if strings.Contains(l, `"image":"bionic:audit"`) && strings.Contains(l, `"exceeded":true`) && strings.Contains(l, `"mode":"audit"`) {
				return true
			}
		}
		return false
	})

	// A container created under audit mode does not start once the
	// policy enforces again.
	id := strings.TrimSpace(g.d.MustCLI(t, "create", "bionic:audit", "/bin/true"))
	g.reload(t, "mode: enforce\n")
	out, err = g.cli("start", id)
	mustFail(t, "start of a container created in audit mode", out, err, "divds", "denied")
	g.reload(t, "mode: audit\n")

	// An invalid policy is refused; the one in force stays.
	harness.WriteFile(t, g.policy, []byte("threshold: lots\n"))
	g.p.Proc.Signal(syscall.SIGHUP)
	harness.WaitFor(t, "the refusal", 20*time.Second, func() bool { return strings.Contains(g.p.Proc.Tail(), "policy reload (SIGHUP) refused") })
	if out, err := g.cli("create", "bionic:audit", "/bin/true"); err != nil {
		t.Fatalf("the audit policy should still be in force: %v\n%s", err, out)
	}
}

// rawRequest sends a request exactly as written to the daemon's socket
// and returns the status code and body.
func rawRequest(t *testing.T, sock, requestLine string, headers map[string]string, body []byte, chunked bool) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	var b strings.Builder
	b.WriteString(requestLine + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n")
	for k, v := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	switch {
	case chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		fmt.Fprintf(&b, "%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	case body != nil:
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	default:
		b.WriteString("Content-Length: 0\r\n\r\n")
	}
	// The daemon may answer and close before a large body is written:
	// read its answer either way.
	c.Write([]byte(b.String()))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	var out strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := res.Body.Read(buf)
		out.Write(buf[:n])
		if err != nil || out.Len() > 1<<20 {
			break
		}
	}
	return res.StatusCode, out.String()
}

// TestBypassTable sends each request form to the gated daemon twice: for
// the clean image, where it must work (so the form really reaches the
// daemon), and for the vulnerable one, where it must fail.
func TestBypassTable(t *testing.T) {
	g := startGate(t, "")
	host := g.reg.Addr
	g.seedBoth(t, "/clean:1")
	g.importBionic(t, "bionic:local")
	g.importAlpine(t, "clean:local")

	type form struct {
		name string
		line func(repo, tag string) string
	}
	esc := func(s string, hex string) string { return strings.ReplaceAll(s, "/", hex) }
	old := oldestAPI(g.d)
	pulls := []form{
		{"no version prefix", func(r, tg string) string { return "POST /images/create?fromImage=" + r + "&tag=" + tg }},
		{"percent-encoded path", func(r, tg string) string {
			return "POST /v1.41/%69mages/%63reate?fromImage=" + esc(r, "%2F") + "&tag=" + tg
		}},
		{"absolute URI", func(r, tg string) string {
			return "POST http://localhost/v1.41/images/create?fromImage=" + r + "&tag=" + tg
		}},
		{"swapped parameters", func(r, tg string) string { return "POST /v1.41/images/create?tag=" + tg + "&fromImage=" + r }},
		{"duplicated parameters", func(r, tg string) string {
			return "POST /v1.41/images/create?fromImage=" + r + "&tag=" + tg + "&fromImage=" + r
		}},
		{"lower-case hex", func(r, tg string) string {
			return "POST /v1.41/images/create?fromImage=" + esc(r, "%2f") + "&tag=" + tg
		}},
		{"old API version", func(r, tg string) string { return "POST /" + old + "/images/create?fromImage=" + r + "&tag=" + tg }},
		{"three-part version", func(r, tg string) string { return "POST /v1.40.5/images/create?fromImage=" + r + "&tag=" + tg }},
		{"tag only in fromImage", func(r, tg string) string { return "POST /v1.41/images/create?fromImage=" + r + ":" + tg }},
		{"tag in fromImage and in tag", func(r, tg string) string {
			return "POST /v1.41/images/create?fromImage=" + r + ":" + tg + "&tag=" + tg
		}},
		{"another tag in fromImage", func(r, tg string) string {
			return "POST /v1.41/images/create?fromImage=" + r + ":other&tag=" + tg
		}},
		// dockerd trims the ':' and pulls every tag of the repository.
		{"empty tag in fromImage", func(r, _ string) string { return "POST /v1.41/images/create?fromImage=" + r + ":" }},
	}
	for i, f := range pulls {
		t.Run("pull/"+f.name, func(t *testing.T) {
			cleanTag := fmt.Sprintf("p%d", i)
			g.d.MustCLI(t, "tag", "clean:local", host+"/clean:"+cleanTag)
			g.d.MustCLI(t, "push", host+"/clean:"+cleanTag)
			g.d.MustCLI(t, "rmi", host+"/clean:"+cleanTag)
			rawRequest(t, g.d.Sock, f.line(host+"/clean", cleanTag), nil, nil, false)
			if !g.present(host + "/clean:" + cleanTag) {
				t.Fatal("the form did not pull the clean image: it proves nothing")
			}
			rawRequest(t, g.d.Sock, f.line(host+"/bionic", "vuln"), nil, nil, false)
			if g.present(host + "/bionic:vuln") {
				t.Fatal("the vulnerable image was pulled and kept")
			}
		})
	}
	t.Run("pull/conflicting duplicates", func(t *testing.T) {
		rawRequest(t, g.d.Sock, "POST /v1.41/images/create?fromImage="+host+"/clean&fromImage="+host+"/bionic&tag=vuln", nil, nil, false)
		if g.present(host + "/bionic:vuln") {
			t.Fatal("the vulnerable image was pulled and kept")
		}
	})
	// dockerd reads the request line with ParseRequestURI: the '#' stays
	// in the query, and this is a pull of fromImage to the daemon, while
	// url.Parse cuts the query at '#' and sees an import.
	t.Run("pull/hash in the query", func(t *testing.T) {
		rawRequest(t, g.d.Sock, "POST /v1.41/images/create?fromSrc=-&#=&fromImage="+host+"/bionic&tag=vuln", nil, nil, false)
		if g.present(host + "/bionic:vuln") {
			t.Fatal("the vulnerable image was pulled and kept")
		}
	})
	t.Run("pull/form body overrides the query", func(t *testing.T) {
		code, body := rawRequest(t, g.d.Sock, "POST /v1.41/images/create?fromImage="+host+"/clean&tag=1",
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, []byte("fromImage="+host+"/bionic&tag=vuln"), false)
		if g.present(host+"/bionic:vuln") || code < 400 {
			t.Fatalf("status %d: %s", code, body)
		}
	})

	registryHas := func(repo, tag string) bool {
		req, _ := http.NewRequest("HEAD", "http://"+host+"/v2/"+repo+"/manifests/"+tag, nil)
		// Docker 29's containerd store pushes OCI manifests, which the
		// registry serves only to a client that accepts them.
		req.Header.Set("Accept", strings.Join([]string{"application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
			"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json"}, ", "))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	}
	auth := map[string]string{"X-Registry-Auth": "e30="} // base64 of {}
	pushes := []form{
		{"no version prefix", func(n, tg string) string { return "POST /images/" + n + "/push?tag=" + tg }},
		{"percent-encoded path", func(n, tg string) string { return "POST /v1.41/images/" + esc(n, "%2F") + "/%70ush?tag=" + tg }},
		{"absolute URI", func(n, tg string) string { return "POST http://localhost/v1.41/images/" + n + "/push?tag=" + tg }},
		{"lower-case hex", func(n, tg string) string { return "POST /v1.41/images/" + esc(n, "%2f") + "/push?tag=" + tg }},
		{"no tag (all tags)", func(n, _ string) string { return "POST /v1.41/images/" + n + "/push" }},
		{"old API version", func(n, tg string) string { return "POST /" + old + "/images/" + n + "/push?tag=" + tg }},
		{"three-part version", func(n, tg string) string { return "POST /v1.40.5/images/" + n + "/push?tag=" + tg }},
		{"tag only in the name", func(n, tg string) string { return "POST /v1.41/images/" + n + ":" + tg + "/push" }},
		{"another tag in the name", func(n, tg string) string { return "POST /v1.41/images/" + n + ":other/push?tag=" + tg }},
	}
	for i, f := range pushes {
		t.Run("push/"+f.name, func(t *testing.T) {
			repo := fmt.Sprintf("pushok%d", i)
			g.d.MustCLI(t, "tag", "clean:local", host+"/"+repo+":1")
			code, out := rawRequest(t, g.d.Sock, f.line(host+"/"+repo, "1"), auth, nil, false)
			if !registryHas(repo, "1") {
				t.Fatalf("the form did not push the clean image (%d %s): it proves nothing", code, out)
			}
			bad := fmt.Sprintf("pushbad%d", i)
			g.d.MustCLI(t, "tag", "bionic:local", host+"/"+bad+":vuln")
			rawRequest(t, g.d.Sock, f.line(host+"/"+bad, "vuln"), auth, nil, false)
			if registryHas(bad, "vuln") {
				t.Fatal("the vulnerable image reached the registry")
			}
		})
	}

	// The daemon reads a push's tag from the form, where a form body's
	// values come before the query's. Before the fix this pushed the
	// vulnerable tag: that is the proof the form reaches the daemon.
	t.Run("push/form body overrides the query", func(t *testing.T) {
		g.d.MustCLI(t, "tag", "clean:local", host+"/pushform:ok")
		g.d.MustCLI(t, "tag", "bionic:local", host+"/pushform:vuln")
		code, out := rawRequest(t, g.d.Sock, "POST /v1.41/images/"+host+"/pushform/push?tag=ok",
			map[string]string{"X-Registry-Auth": "e30=", "Content-Type": "application/x-www-form-urlencoded"}, []byte("tag=vuln"), false)
		if registryHas("pushform", "vuln") {
			t.Fatalf("the vulnerable image reached the registry (status %d: %s)", code, out)
		}
	})

	jsonCT := map[string]string{"Content-Type": "application/json"}
	body := func(img string) []byte { return []byte(`{"Image":"` + img + `","Cmd":["/bin/true"]}`) }
	runs := []struct {
		name    string
		line    string
		headers map[string]string
		chunked bool
	}{
		{"no version prefix", "POST /containers/create", jsonCT, false},
		{"percent-encoded path", "POST /v1.41/%63ontainers/create", jsonCT, false},
		{"absolute URI", "POST http://localhost/v1.41/containers/create", jsonCT, false},
		{"chunked body", "POST /v1.41/containers/create", jsonCT, true},
		{"old API version", "POST /" + old + "/containers/create", jsonCT, false},
		{"three-part version", "POST /v1.40.5/containers/create", jsonCT, false},
	}
	for _, f := range runs {
		t.Run("run/"+f.name, func(t *testing.T) {
			if code, out := rawRequest(t, g.d.Sock, f.line, f.headers, body("clean:local"), f.chunked); code != 201 {
				t.Fatalf("the form did not create a clean container (%d %s): it proves nothing", code, out)
			}
			if code, out := rawRequest(t, g.d.Sock, f.line, f.headers, body("bionic:local"), f.chunked); code == 201 {
				t.Fatalf("a container of the vulnerable image was created: %s", out)
			}
		})
	}
	big := []byte(`{"Image":"bionic:local","Cmd":["/bin/true"],"Labels":{"pad":"` + strings.Repeat("x", 1<<20+10) + `"}}`)
	bad := []struct {
		name    string
		headers map[string]string
		body    []byte
	}{
		{"body over 1 MiB", jsonCT, big},
		{"empty body", jsonCT, []byte{}},
		{"not declared JSON", map[string]string{"Content-Type": "text/plain"}, body("bionic:local")},
		{"image named twice", jsonCT, []byte(`{"Image":"clean:local","image":"bionic:local","Cmd":["/bin/true"]}`)},
	}
	for _, f := range bad {
		t.Run("run/"+f.name, func(t *testing.T) {
			if code, out := rawRequest(t, g.d.Sock, "POST /v1.41/containers/create", f.headers, f.body, false); code == 201 {
				t.Fatalf("a container was created: %s", out)
			}
		})
	}
}

var rfc5424 = regexp.MustCompile(`^<(\d+)>1 \S+ \S+ divds-authz \d+ decision \[divds@32473 [^\]]*\] (\{.*\})$`)

func TestAuditTrail(t *testing.T) {
	g := startGate(t, "")
	g.importBionic(t, "bionic:vuln")
	g.importAlpine(t, "clean:1")
	decide := func(n int) {
		for i := 0; i < n; i++ {
			g.cli("create", "bionic:vuln", "/bin/true")
			g.cli("create", "clean:1", "/bin/true")
		}
	}
	decide(2)
	harness.WaitFor(t, "4 audit records", 30*time.Second, func() bool { return len(g.rs.Lines()) >= 4 })
	for _, l := range g.rs.Lines() {
		m := rfc5424.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("not an RFC 5424 divds record: %q", l)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(m[2]), &rec); err != nil {
			t.Fatalf("record JSON: %v: %s", err, m[2])
		}
		for _, k := range []string{"time", "action", "image", "image_id", "decision", "verdict", "mode", "score", "threshold", "policy_digest", "db_revision", "duration_ms", "request_id"} {
			if _, ok := rec[k]; !ok {
				t.Fatalf("record lacks %s: %s", k, m[2])
			}
		}
		if pri := m[1]; pri != "84" && pri != "86" { // authpriv.warning, authpriv.info
			t.Fatalf("priority %s", pri)
		}
	}
	if n := len(g.rs.Lines()); n != 4 {
		t.Fatalf("%d records for 4 decisions", n)
	}
	// Stop rsyslog for a while: no record that fits the queue is lost.
	g.rs.Proc.Stop()
	decide(3)
	harness.WaitFor(t, "the plugin to find syslog unreachable", 30*time.Second, func() bool {
		return strings.Contains(g.p.Proc.Tail(), "unreachable;")
	})
	g.rs.Restart()
	// One more decision after the restart: records are delivered in
	// order, so once it arrived every earlier record (and any resend of
	// one) has too.
	decide(1)
	harness.WaitFor(t, "the queued records", 60*time.Second, func() bool { return len(g.rs.Lines()) >= 12 })
	if n := len(g.rs.Lines()); n != 12 {
		t.Fatalf("%d records for 12 decisions", n)
	}
	// SIGTERM right after decisions: the queue is flushed before exit.
	decide(2)
	g.p.Proc.Stop()
	if n := len(g.rs.Lines()); n != 16 {
		t.Fatalf("%d records after SIGTERM, want 16", n)
	}
}

func TestConcurrentPulls(t *testing.T) {
	g := startGate(t, "")
	var refs []string
	for i, rootfs := range []string{"alpine-3.7.3", "alpine-3.8.5", "alpine-3.9.6"} {
		dir := t.TempDir()
		copyTree(t, testdata.Path(t, "rootfs", rootfs), dir)
		tarPath := filepath.Join(g.tars, fmt.Sprintf("img%d.tar", i))
		tarDir(t, dir, tarPath)
		ref := fmt.Sprintf("%s/conc%d:1", g.reg.Addr, i)
		g.seedRegistry(t, tarPath, ref)
		refs = append(refs, ref)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 10)
	done := make(chan struct{})
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if out, err := g.cli("pull", refs[i%3]); err != nil {
				errs <- fmt.Sprintf("pull %s: %v\n%s", refs[i%3], err, out)
			}
		}(i)
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		t.Fatal("concurrent pulls hung: the plugin's calls back into the daemon deadlocked")
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for _, r := range refs {
		if !g.present(r) {
			t.Errorf("%s missing after its pull", r)
		}
	}
	// Arrival scans, if any, would add to the count. They run in the
	// order of the daemon's events: once a new image imported after the
	// pulls is scanned, every pull's arrival has been handled.
	g.importAlpine(t, "marker:1")
	harness.WaitFor(t, "the arrival scan of the marker image", 60*time.Second, func() bool {
		return g.p.Metric("divds_scans_total") >= 4
	})
	if n := g.p.Metric("divds_scans_total"); n != 4 {
		t.Fatalf("%v scans for 3 pulled images and one imported", n)
	}
}

// TestPullScanBefore: with pull_scan: before, the image is scanned in the
// registry and the pull itself is denied: docker pull fails and the image
// never lands. A clean image still pulls.
func TestPullScanBefore(t *testing.T) {
	g := startGate(t, "pull_scan: before\n")
	vuln, clean := g.seedBoth(t, "/clean:1")

	out, err := g.cli("pull", vuln)
	mustFail(t, "pull with pull_scan: before", out, err, "denied before the pull (scanned in its registry): image score "+bionicScore)
	if g.present(vuln) {
		t.Fatal("the image landed")
	}
	if out, err := g.cli("pull", clean); err != nil {
		t.Fatalf("clean pull: %v\n%s", err, out)
	}

	// A manifest list whose arm64 image fails and whose amd64 one is
	// clean: the platform pulled is the platform scanned.
	multi := g.reg.Addr + "/multi:1"
	g.seedIndex(t, multi, map[string]string{"amd64": g.alpineTar(t), "arm64": g.bionicTar(t)})
	out, err = g.cli("pull", "--platform", "linux/arm64", multi)
	mustFail(t, "pull of the failing platform", out, err, "denied before the pull (scanned in its registry): image score "+bionicScore)
	if out, err := g.cli("pull", "--platform", "linux/amd64", multi); err != nil {
		t.Fatalf("pull of the clean platform: %v\n%s", err, out)
	}
}

// seedIndex writes a manifest list into the registry: one image per
// architecture, each of one layer tar.
func (g *gate) seedIndex(t *testing.T, ref string, layers map[string]string) {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	for arch, tarPath := range layers {
		layer, err := tarball.LayerFromFile(tarPath)
		if err != nil {
			t.Fatal(err)
		}
		base, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: arch, RootFS: v1.RootFS{Type: "layers"}})
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(base, layer)
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatalf("seed %s: %v", ref, err)
	}
}

// TestArrivalScanning: images are scanned as they arrive, without any
// gated request, and the event stream is followed again after dockerd
// restarts.
func TestArrivalScanning(t *testing.T) {
	g := startGate(t, "")
	g.importAlpine(t, "arrived:1")
	defer g.dumpOnFailure(t)
	harness.WaitFor(t, "the arrival scan", 30*time.Second, func() bool { return g.p.Metric("divds_scans_total") >= 1 })
	if n := g.p.Metric("divds_decisions_total"); n != 0 {
		t.Fatalf("%v decisions: the scan must come from the event, not a gate", n)
	}
	g.d.Stop()
	g.d = harness.StartDocker(t, harness.DockerOptions{Dir: g.d.Dir, AuthzPlugins: []string{g.p.Name}})
	g.importBionic(t, "arrived:2")
	harness.WaitFor(t, "an arrival scan after dockerd restarted", 60*time.Second, func() bool { return g.p.Metric("divds_scans_total") >= 2 })
}

// TestServiceGate: a swarm service's tasks are containers the daemon
// creates itself, never through /containers/create. The service create
// and update requests are gated by the image the nodes will pull, and a
// rollback by the image of the previous spec.
func TestServiceGate(t *testing.T) {
	g := startGate(t, "allow_swarm_join: true\n")
	vuln, clean := g.seedBoth(t, "/clean:1")
	g.d.MustCLI(t, "swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)))
	t.Cleanup(func() {
		// Leaving the swarm stops its tasks now rather than at dockerd's
		// shutdown.
		g.cli("service", "rm", "ok", "back")
		g.cli("swarm", "leave", "--force")
	})

	out, err := g.cli("service", "create", "--detach", "--name", "bad", vuln, "sleep", "300")
	mustFail(t, "service create of a failing image", out, err, "service of "+vuln, "denied before its tasks run", "image score "+bionicScore)
	// A create ignores a rollback parameter: the gate must too.
	spec := func(name, image string) []byte {
		return []byte(`{"Name":"` + name + `","TaskTemplate":{"ContainerSpec":{"Image":"` + image + `","Args":["sleep","300"]}}}`)
	}
	jsonCT := map[string]string{"Content-Type": "application/json"}
	code, body := rawRequest(t, g.d.Sock, "POST /v1.41/services/create?rollback=previous", jsonCT, spec("rb", vuln+"@"+g.reg.Digest(t, "bionic", "vuln")), false)
	if code != http.StatusForbidden || !strings.Contains(body, "image score") {
		t.Fatalf("service create with a rollback parameter: %d %s", code, body)
	}
	// A tag the API client did not pin is resolved by each node at each
	// task start: the gate cannot know what will run.
	code, body = rawRequest(t, g.d.Sock, "POST /v1.41/services/create", jsonCT, spec("tag", clean), false)
	if code != http.StatusForbidden || !strings.Contains(body, "not pinned by digest") {
		t.Fatalf("service create of an unpinned tag: %d %s", code, body)
	}
	if out, _ := g.cli("service", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("a denied service exists: %s", out)
	}
	g.d.MustCLI(t, "service", "create", "--detach", "--name", "ok", clean, "sleep", "300")
	out, err = g.cli("service", "update", "--detach", "--image", vuln, "ok")
	mustFail(t, "service update to a failing image", out, err, "service of "+vuln, "denied")
	if got := g.d.MustCLI(t, "service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", "ok"); !strings.HasPrefix(got, clean) {
		t.Fatalf("the service's image changed to %s", got)
	}

	// A rollback names no image: the previous spec's is checked. It was
	// allowed under mode: audit, and the policy in force denies it now.
	g.reload(t, "mode: audit\nallow_swarm_join: true\n")
	g.d.MustCLI(t, "service", "create", "--detach", "--name", "back", vuln, "sleep", "300")
	g.reload(t, "allow_swarm_join: true\n")
	g.d.MustCLI(t, "service", "update", "--detach", "--image", clean, "back")
	out, err = g.cli("service", "update", "--detach", "--rollback", "back")
	mustFail(t, "service rollback to a failing image", out, err, "service of "+vuln, "denied")
}

// runnableVulnTar writes the layer tar of a vulnerable image that can
// run: the Alpine minirootfs (for its busybox) with the bionic rootfs's
// package database and release files over it, so that it is diagnosed as
// the bionic image.
func (g *gate) runnableVulnTar(t *testing.T) string {
	t.Helper()
	p := filepath.Join(g.tars, "bionic-runnable.tar")
	tarDir(t, runnableVulnRoot(t), p)
	return p
}

// runnableVulnRoot writes the root filesystem of runnableVulnTar.
func runnableVulnRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	untarGz(t, testdata.Path(t, "images", "alpine-minirootfs-3.7.3-x86_64.tar.gz"), root)
	for _, sub := range []string{"etc", "var"} {
		out, err := harness.Run(context.Background(), nil, "cp", "-a", filepath.Join(testdata.Path(t, "rootfs", "ubuntu-18.04-bionic"), sub), root)
		if err != nil {
			t.Fatalf("cp %s: %v\n%s", sub, err, out)
		}
	}
	return root
}

// reviewRecords returns the audit records of reviews of running
// containers that rsyslog received.
func (g *gate) reviewRecords(t *testing.T) []map[string]any {
	var out []map[string]any
	for _, l := range g.rs.Lines() {
		if !strings.Contains(l, `action="running"`) {
			continue
		}
		i := strings.Index(l, "] {")
		if i < 0 {
			t.Fatalf("record without JSON: %s", l)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(l[i+2:]), &rec); err != nil {
			t.Fatalf("record %s: %v", l, err)
		}
		out = append(out, rec)
	}
	return out
}

// TestRunningReview: containers the daemon starts by itself (a restart
// policy, when dockerd restarts) never pass a gate, and neither does an
// image a policy change turned failing. Reviews of the running
// containers report them, and stop them under running: stop.
func TestRunningReview(t *testing.T) {
	g := startGate(t, "mode: audit\n")
	defer g.dumpOnFailure(t)
	g.d.MustCLI(t, "import", g.runnableVulnTar(t), "vulnrun:1")
	g.d.MustCLI(t, "run", "-d", "--restart", "always", "--stop-timeout", "1", "--network", "none", "--name", "keep", "vulnrun:1", "sleep", "1000")
	running := func() bool {
		out, err := g.cli("inspect", "--format", "{{.State.Running}}", "keep")
		return err == nil && strings.TrimSpace(out) == "true"
	}
	// A container that exits and is restarted by its restart policy.
	g.d.MustCLI(t, "run", "-d", "--restart", "always", "--network", "none", "--name", "crash", "vulnrun:1", "sh", "-c", "sleep 1; exit 1")
	waitFor := func(container, what, reason, decision string) {
		t.Helper()
		harness.WaitFor(t, what, 60*time.Second, func() bool {
			for _, r := range g.reviewRecords(t) {
				if r["container"] == container && r["reason"] == reason && r["decision"] == decision && r["verdict"] == "deny" {
					return true
				}
			}
			return false
		})
	}
	waitRecord := func(what, reason, decision string) { t.Helper(); waitFor("keep", what, reason, decision) }

	// Enforcing now: the running containers are reported, not stopped;
	// each restart of the crashing one is reviewed as it starts.
	g.reload(t, "")
	waitRecord("a review after the policy reload", "policy reloaded", "flagged")
	waitFor("crash", "a review of a restart by the restart policy", "container started", "flagged")
	g.d.MustCLI(t, "rm", "-f", "crash")
	// The metric follows the die event of the removed container.
	harness.WaitFor(t, "the metric to count the one failing container left", 30*time.Second, func() bool {
		return g.p.Metric("divds_running_denied_containers") == 1
	})
	if st := g.status(t); len(st.RunningDenied) != 1 || st.RunningDenied[0].Name != "keep" || !strings.Contains(st.RunningDenied[0].Summary, "image score") {
		t.Fatalf("status lists the failing running containers as %+v", st.RunningDenied)
	}
	if !running() {
		t.Fatal("a reported container was stopped")
	}

	// dockerd restarts and starts the container again by itself.
	g.d.Stop()
	g.d = harness.StartDocker(t, harness.DockerOptions{Dir: g.d.Dir, AuthzPlugins: []string{g.p.Name}})
	harness.WaitFor(t, "the restart policy", 60*time.Second, running)
	waitRecord("a review after dockerd restarted", "dockerd connected", "flagged")

	g.reload(t, "running: stop\n")
	waitRecord("the stop", "policy reloaded", "stopped")
	if running() {
		t.Fatal("the container still runs")
	}
	harness.WaitFor(t, "the metric to drop to 0 after the stop", 30*time.Second, func() bool {
		return g.p.Metric("divds_running_denied_containers") == 0
	})
	// With --restart always, dockerd starts a stopped container again at
	// its next start: the stop cleared the policy.
	if policy := strings.TrimSpace(g.d.MustCLI(t, "inspect", "--format", "{{.HostConfig.RestartPolicy.Name}}", "keep")); policy != "no" {
		t.Fatalf("restart policy %q after the stop", policy)
	}
	g.d.Stop()
	g.d = harness.StartDocker(t, harness.DockerOptions{Dir: g.d.Dir, AuthzPlugins: []string{g.p.Name}})
	if running() {
		t.Fatal("dockerd started the stopped container again")
	}
}

// pushPlugin creates a managed plugin from a root filesystem, pushes it
// to the registry as ref and removes it from the daemon again.
func (g *gate) pushPlugin(t *testing.T, ref, root string) {
	t.Helper()
	g.d.MustCLI(t, "plugin", "create", ref, pluginDir(t, root))
	g.d.MustCLI(t, "plugin", "push", ref)
	g.d.MustCLI(t, "plugin", "rm", ref)
}

// pluginDir lays out a plugin (config.json and rootfs/) for docker plugin
// create.
func pluginDir(t *testing.T, root string) string {
	t.Helper()
	dir := t.TempDir()
	harness.WriteFile(t, filepath.Join(dir, "config.json"), []byte(`{"description":"divds test plugin","documentation":"https://example.com",
"entrypoint":["/bin/sleep","1000"],"interface":{"types":["docker.dummy/1.0"],"socket":"dummy.sock"},"network":{"type":"none"}}`))
	if out, err := harness.Run(context.Background(), nil, "cp", "-a", root, filepath.Join(dir, "rootfs")); err != nil {
		t.Fatalf("cp rootfs: %v\n%s", err, out)
	}
	return dir
}

// TestPluginInstallGate: a managed plugin's rootfs is an image that runs
// with the privileges granted to it. Its install or upgrade from a
// registry is denied, before the daemon pulls anything, when the rootfs
// fails.
func TestPluginInstallGate(t *testing.T) {
	// The plugins are made on this daemon, standing for the host that
	// published them: plugin create must be allowed for that.
	g := startGate(t, "allow_plugin_admin: true\n")
	defer g.dumpOnFailure(t)
	vuln := g.reg.Addr + "/plug-vuln:1"
	g.pushPlugin(t, vuln, runnableVulnRoot(t))
	clean := g.reg.Addr + "/plug-clean:1"
	alpine := t.TempDir()
	untarGz(t, testdata.Path(t, "images", "alpine-minirootfs-3.7.3-x86_64.tar.gz"), alpine)
	g.pushPlugin(t, clean, alpine)

	out, err := g.cli("plugin", "install", "--grant-all-permissions", "--disable", vuln)
	mustFail(t, "plugin install of a failing rootfs", out, err, "plugin install of "+vuln, "denied before the pull (scanned in its registry): image score")
	if out := g.d.MustCLI(t, "plugin", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("a denied plugin was installed: %s", out)
	}
	g.d.MustCLI(t, "plugin", "install", "--grant-all-permissions", "--disable", "--alias", "plug", clean)
	out, err = g.cli("plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check", "plug", vuln)
	mustFail(t, "plugin upgrade to a failing rootfs", out, err, "plugin install of "+vuln, "denied")
}

// oldestAPI is the oldest API version prefix the daemon takes: v1.24 on
// Debian's 20.10, v1.40 on Docker 29 (which refuses older ones itself).
func oldestAPI(d *harness.Docker) string {
	if d.Engine.Is29() {
		return "v1.40"
	}
	return "v1.24"
}
