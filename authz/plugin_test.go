package authz

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/authorization"

	"github.com/divds/divds/audit"
	"github.com/divds/divds/report"
	"github.com/divds/divds/scoring"
)

type fakeDaemon struct {
	mu      sync.Mutex
	images  map[string]ImageInfo // ref -> image
	untags  []string
	failing error
	running []Container
	stopped []string
	removed []string
	// containers by ID, beside the fixed ones of Container
	containers map[string]Container
}

func (d *fakeDaemon) RunningContainers(_ context.Context, ids ...string) ([]Container, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failing != nil {
		return nil, d.failing
	}
	var out []Container
	for _, c := range d.running {
		if len(ids) == 0 || slices.Contains(ids, c.ID) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (d *fakeDaemon) StopContainer(_ context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if id == "unstoppable" {
		return errors.New("container unstoppable: permission denied")
	}
	d.stopped = append(d.stopped, id)
	return nil
}

func (d *fakeDaemon) RemoveContainer(_ context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.removed = append(d.removed, id)
	return nil
}

func (d *fakeDaemon) RemovePlatforms(_ context.Context, id string, platforms []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, pl := range platforms {
		d.removed = append(d.removed, ImageKey(id, pl))
	}
	return nil
}

func (d *fakeDaemon) Inspect(_ context.Context, ref string) (ImageInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failing != nil {
		return ImageInfo{}, d.failing
	}
	if i, ok := d.images[ref]; ok {
		return i, nil
	}
	if strings.HasPrefix(ref, "sha256:") {
		// By ID: every name the image has now.
		var info ImageInfo
		for name, i := range d.images {
			if i.ID == ref {
				info.ID, info.Platforms = ref, i.Platforms
				if !strings.Contains(name, "@") {
					info.RepoTags = append(info.RepoTags, name)
				}
			}
		}
		if info.ID != "" {
			sort.Strings(info.RepoTags)
			return info, nil
		}
	}
	return ImageInfo{}, fmt.Errorf("%w: %s", ErrNotFound, ref)
}

func (d *fakeDaemon) Repo(_ context.Context, repo string) ([]ImageInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []ImageInfo
	for ref, i := range d.images {
		if strings.HasPrefix(ref, repo+":") {
			out = append(out, i)
		}
	}
	return out, nil
}

func (d *fakeDaemon) Container(_ context.Context, name string) (Container, error) {
	switch name {
	case "oldvuln", "web/oldvuln":
		return Container{ID: "c-oldvuln", Name: "oldvuln", Image: "app:vuln", ImageID: "sha256:vuln"}, nil
	case "oldok", "web/okalias":
		return Container{ID: "c-oldok", Name: "oldok", Image: "app:ok", ImageID: "sha256:ok"}, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.containers[name]; ok {
		return c, nil
	}
	return Container{}, fmt.Errorf("%w: container %s", ErrNotFound, name)
}

func (d *fakeDaemon) PluginName(_ context.Context, ref string) (string, error) {
	if strings.HasPrefix("2c74d4c3c0aa10ae", ref) {
		return "divds:latest", nil
	}
	if ref == "other" {
		return "other:latest", nil
	}
	return "", fmt.Errorf("%w: plugin %s", ErrNotFound, ref)
}

func (d *fakeDaemon) PreviousServiceImage(_ context.Context, service string) (string, error) {
	switch service {
	case "s-vuln":
		return "app:vuln@" + pin, nil
	case "s-ok":
		return "reg/app:ok@" + pin, nil
	case "s-tag":
		return "reg/app:ok", nil
	}
	return "", fmt.Errorf("%w: service %s", ErrNotFound, service)
}

func (d *fakeDaemon) Untag(_ context.Context, ref string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.untags = append(d.untags, ref)
	delete(d.images, ref)
	return nil
}

type fakeDB struct{ err error }

func (f fakeDB) Revision(*scoring.Policy) (uint64, error) { return 7, f.err }

type recorder struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (r *recorder) Record(rec audit.Record) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
}

// reports: image ID -> findings of that severity count
func newPlugin(t testing.TB, pol *scoring.Policy, d *fakeDaemon, db Database, scans *atomic.Int32) (*Plugin, *recorder) {
	t.Helper()
	scan := func(_ context.Context, id string) (*report.Report, uint64, error) {
		scans.Add(1)
		time.Sleep(20 * time.Millisecond) // let concurrent callers pile up
		if strings.Contains(id, "unreachable") {
			return nil, 0, fmt.Errorf("fetch %s: dial tcp: connection refused", id)
		}
		rep := &report.Report{SchemaVersion: 1, Image: report.Image{ID: id}}
		// linux/s390x of any index is the vulnerable platform.
		if strings.Contains(id, "vuln") || strings.HasSuffix(id, "@linux/s390x") {
			for i := 0; i < 30; i++ {
				rep.Findings = append(rep.Findings, report.Finding{ID: fmt.Sprintf("CVE-2019-%04d", i), Package: "openssl", Version: "1", FixedIn: "2", Severity: "high"})
			}
		}
		return rep, 7, nil
	}
	remote := func(ctx context.Context, ref, platform string) (*report.Report, uint64, error) {
		if platform != "" {
			ref += "|" + platform
		}
		return scan(ctx, ref)
	}
	v, err := OpenVerdicts(t.TempDir(), scan)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	rec := &recorder{}
	return New(pol, Options{Daemon: d, Verdicts: v, Database: db, Auditor: rec, PolicyPath: "/etc/divds/policy.yaml", PluginName: "divds:latest", RemoteScan: remote}), rec
}

func images() *fakeDaemon {
	return &fakeDaemon{images: map[string]ImageInfo{
		"app:vuln": {ID: "sha256:vuln", RepoTags: []string{"app:vuln"}},
		"app:ok":   {ID: "sha256:ok", RepoTags: []string{"app:ok"}},
		// local copies of images whose registry cannot be read
		"unreachable/app:ok":   {ID: "sha256:ok", RepoTags: []string{"unreachable/app:ok"}},
		"unreachable/app:vuln": {ID: "sha256:vuln", RepoTags: []string{"unreachable/app:vuln"}},
		// a digest reference that some engine might resolve by the ID
		// alone; the daemon reports no digest of trusted/app for it
		"trusted/app@sha256:" + strings.Repeat("f", 64): {ID: "sha256:vuln", RepoTags: []string{"app:vuln"}},
		// pulled from trusted/app: the daemon reports the digest
		"trusted/app:pulled": {ID: "sha256:vulnpulled", RepoTags: []string{"trusted/app:pulled"}, RepoDigests: []string{"trusted/app@sha256:" + strings.Repeat("e", 64)}},
		// pinned references of local images (services)
		"app:vuln@" + pin:             {ID: "sha256:vuln", RepoTags: []string{"app:vuln"}},
		"unreachable/app:ok@" + pin:   {ID: "sha256:ok", RepoTags: []string{"unreachable/app:ok"}},
		"unreachable/app:vuln@" + pin: {ID: "sha256:vuln", RepoTags: []string{"unreachable/app:vuln"}},
	}}
}

func req(method, uri string, body string) authorization.Request {
	return authorization.Request{RequestMethod: method, RequestURI: uri, RequestBody: []byte(body)}
}

func service(uri, image string) authorization.Request {
	return req("POST", uri, fmt.Sprintf(`{"Name":"s1","TaskTemplate":{"ContainerSpec":{"Image":%q}}}`, image))
}

// trustedOverride raises θ for images from trusted/app.
func trustedOverride(p *scoring.Policy) {
	th := scoring.Points(10000000)
	p.Overrides = []scoring.Override{{Images: []string{"trusted/app"}, Threshold: &th}}
}

// pin is the digest the service rows pin their images by.
const pin = "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"

func TestGates(t *testing.T) {
	tests := []struct {
		name  string
		pol   func(*scoring.Policy)
		r     authorization.Request
		allow bool
		msg   []string
	}{
		{"push vulnerable", nil, req("POST", "/v1.41/images/app/push?tag=vuln", ""), false,
			[]string{"push of app:vuln denied: image score 238.50 > threshold 200.00 (high 30", "Approve findings in /etc/divds/policy.yaml", "divds-authz scan app:vuln"}},
		{"push clean", nil, req("POST", "/v1.41/images/app/push?tag=ok", ""), true, nil},
		{"push all tags", nil, req("POST", "/v1.41/images/app/push", ""), false, []string{"denied"}},
		{"push unknown image", nil, req("POST", "/v1.41/images/nope/push?tag=1", ""), true, nil},
		{"push gate off", func(p *scoring.Policy) { p.Actions = []scoring.Action{scoring.ActionRun} }, req("POST", "/images/app/push?tag=vuln", ""), true, nil},
		{"run vulnerable", nil, req("POST", "/containers/create", `{"Image":"app:vuln"}`), false, []string{"run of app:vuln denied: image score 238.50"}},
		{"run clean", nil, req("POST", "/containers/create", `{"Image":"app:ok"}`), true, nil},
		{"start of an old container of a failing image", nil, req("POST", "/v1.41/containers/oldvuln/start", ""), false, []string{"run of app:vuln denied: image score"}},
		{"start through a link alias", nil, req("POST", "/v1.41/containers/web/oldvuln/start", ""), false, []string{"run of app:vuln denied"}},
		{"exec in a container of a failing image", nil, req("POST", "/v1.41/containers/oldvuln/exec", `{"Cmd":["sh"]}`), false, []string{"exec of app:vuln denied: image score"}},
		{"exec through a link alias", nil, req("POST", "/containers/web/oldvuln/exec", `{"Cmd":["sh"]}`), false, []string{"exec of app:vuln denied"}},
		{"exec in a container of a clean image", nil, req("POST", "/containers/oldok/exec", `{"Cmd":["sh"]}`), true, nil},
		{"exec, run gate off", func(p *scoring.Policy) { p.Actions = []scoring.Action{scoring.ActionPull} }, req("POST", "/containers/oldvuln/exec", `{}`), true, nil},
		{"unknown gated verb", nil, req("POST", "/v1.41/images/app/create", ""), false, []string{"refused", "route is unknown"}},
		{"unknown gated verb, gates off", func(p *scoring.Policy) { p.Actions = nil }, req("PUT", "/v1.41/x/push", ""), false, []string{"refused"}},
		{"swarm init", nil, req("POST", "/v1.41/swarm/init", `{}`), false, []string{"refused", "allow_swarm_join"}},
		{"swarm join", nil, req("POST", "/swarm/join", `{}`), false, []string{"refused", "allow_swarm_join"}},
		{"swarm join allowed", func(p *scoring.Policy) { p.AllowSwarmJoin = true }, req("POST", "/swarm/join", `{}`), true, nil},
		{"swarm update", nil, req("POST", "/swarm/update?version=1", `{}`), true, nil},
		{"plugin create", nil, req("POST", "/v1.41/plugins/create?name=p", ""), false, []string{"refused", "allow_plugin_admin"}},
		{"plugin create allowed", func(p *scoring.Policy) { p.AllowPluginAdmin = true }, req("POST", "/plugins/create?name=p", ""), true, nil},
		{"build", nil, req("POST", "/v1.41/build?t=x", ""), true, nil},
		{"build refused", func(p *scoring.Policy) { p.AllowBuild = false }, req("POST", "/v1.41/build?t=x", ""), false, []string{"refused", "allow_build"}},
		{"hash in the URI", nil, req("POST", "/images/create?fromSrc=-&#=&fromImage=app&tag=vuln", ""), false, []string{"request refused", "'#'"}},
		{"start of an old container of a clean image", nil, req("POST", "/containers/oldok/start", ""), true, nil},
		{"restart of an old container of a failing image", nil, req("POST", "/containers/oldvuln/restart", ""), false, []string{"denied"}},
		{"start of no container", nil, req("POST", "/containers/nope/start", ""), true, nil},
		{"run absent image", nil, req("POST", "/containers/create", `{"Image":"nope"}`), true, nil},
		{"run malformed", nil, req("POST", "/containers/create", ``), false, []string{"request refused", "without a JSON body"}},
		{"audit mode", func(p *scoring.Policy) { p.Mode = scoring.ModeAudit }, req("POST", "/containers/create", `{"Image":"app:vuln"}`), true, nil},
		{"threshold raised", func(p *scoring.Policy) { p.Threshold = 30000 }, req("POST", "/containers/create", `{"Image":"app:vuln"}`), true, nil},
		{"pull of a local failing image", nil, req("POST", "/images/create?fromImage=app&tag=vuln", ""), false, []string{"pull of app:vuln denied"}},
		{"pull of a new image", nil, req("POST", "/images/create?fromImage=new&tag=1", ""), true, nil},
		{"disable self", nil, req("POST", "/v1.41/plugins/divds:latest/disable", ""), false, []string{"refused", "allow_plugin_admin"}},
		{"remove self", nil, req("DELETE", "/v1.41/plugins/divds?force=1", ""), false, []string{"refused"}},
		{"disable self by ID prefix", nil, req("POST", "/v1.41/plugins/2c74d4/disable", ""), false, []string{"refused"}},
		{"remove self by ID", nil, req("DELETE", "/v1.41/plugins/2c74d4c3c0aa10ae?force=1", ""), false, []string{"refused"}},
		{"disable self allowed", func(p *scoring.Policy) { p.AllowPluginAdmin = true }, req("POST", "/plugins/divds:latest/disable", ""), true, nil},
		{"disable another plugin", nil, req("POST", "/plugins/other/disable", ""), true, nil},
		{"service of a failing registry image", nil, service("/v1.41/services/create", "reg/app:vuln@"+pin), false,
			[]string{"service of reg/app:vuln@" + pin + " denied before its tasks run (scanned in its registry): image score 238.50", "divds-authz scan --remote reg/app:vuln@" + pin}},
		{"service of a clean registry image", nil, service("/v1.41/services/create", "reg/app:ok@"+pin), true, nil},
		{"service update to a failing image", nil, service("/v1.41/services/s1/update?version=3", "reg/app:vuln@"+pin), false, []string{"denied"}},
		{"service of a failing local image", nil, service("/services/create", "app:vuln@"+pin), false, []string{"service of app:vuln@" + pin + " denied: image score"}},
		{"service of a clean local image, registry unreadable", nil, service("/services/create", "unreachable/app:ok@"+pin), true, nil},
		{"service of a failing local image, registry unreadable", nil, service("/services/create", "unreachable/app:vuln@"+pin), false, []string{"denied"}},
		{"service of an image in no readable place", nil, service("/services/create", "unreachable/new:1@"+pin), false,
			[]string{"service of unreachable/new:1@" + pin + " denied: the image could not be scanned in its registry", "connection refused", "serve --registry-auth"}},
		{"service, on_error allow", func(p *scoring.Policy) { p.OnError = scoring.OnErrorAllow }, service("/services/create", "unreachable/new:1@"+pin), true, nil},
		{"service of an unpinned tag", nil, service("/services/create", "reg/app:ok"), false, []string{"not pinned by digest", "--no-resolve-image"}},
		{"service of an unpinned local tag", nil, service("/services/create", "app:ok"), false, []string{"not pinned by digest"}},
		{"service create with a rollback parameter", nil, service("/v1.41/services/create?rollback=previous", "reg/app:vuln@"+pin), false, []string{"service of reg/app:vuln@" + pin + " denied"}},
		{"service rollback to a failing image", nil, req("POST", "/v1.41/services/s-vuln/update?version=4&rollback=previous", `{}`), false, []string{"service of app:vuln@" + pin + " denied"}},
		{"service rollback to a clean image", nil, req("POST", "/v1.41/services/s-ok/update?rollback=previous", `{}`), true, nil},
		{"service rollback to an unpinned image", nil, req("POST", "/v1.41/services/s-tag/update?rollback=previous", `{}`), false, []string{"not pinned"}},
		{"service rollback without a previous spec", nil, req("POST", "/v1.41/services/s-new/update?rollback=previous", `{}`), true, nil},
		{"service, run gate off", func(p *scoring.Policy) { p.Actions = []scoring.Action{scoring.ActionPull} }, service("/services/create", "reg/app:vuln"), true, nil},
		{"service without a container spec", nil, req("POST", "/services/create", `{"TaskTemplate":{"PluginSpec":{}}}`), false, []string{"request refused", "without an image"}},
		{"pull_scan before, the host's platform", func(p *scoring.Policy) { p.PullScan = scoring.PullScanBefore },
			req("POST", "/images/create?fromImage=reg/multi&tag=1", ""), true, nil},
		// The fake registry's image for this platform fails: the platform
		// reached the scan.
		{"pull_scan before, another platform", func(p *scoring.Policy) { p.PullScan = scoring.PullScanBefore },
			req("POST", "/images/create?fromImage=reg/multi&tag=1&platform=linux/vulnarch", ""), false, []string{"pull of reg/multi:1 denied before the pull"}},
		{"plugin install of a failing rootfs", nil, req("POST", "/v1.41/plugins/pull?remote=reg/plug:vuln&name=plug", "[]"), false,
			[]string{"plugin install of reg/plug:vuln denied before the pull (scanned in its registry): image score 238.50"}},
		{"plugin install of a clean rootfs", nil, req("POST", "/v1.41/plugins/pull?remote=reg/plug:ok&name=plug", "[]"), true, nil},
		{"plugin upgrade to a failing rootfs", nil, req("POST", "/v1.41/plugins/other/upgrade?remote=reg/plug:vuln", "[]"), false, []string{"denied before the pull"}},
		{"plugin install, pull gate off", func(p *scoring.Policy) { p.Actions = []scoring.Action{scoring.ActionRun} }, req("POST", "/plugins/pull?remote=reg/plug:vuln", "[]"), true, nil},
		{"upgrade self, pull gate off", func(p *scoring.Policy) { p.Actions = []scoring.Action{scoring.ActionRun} }, req("POST", "/v1.41/plugins/divds:latest/upgrade?remote=reg/plug:ok", "[]"), false, []string{"refused", "allow_plugin_admin"}},
		{"auth", nil, req("POST", "/v1.41/auth", `{"username":"u","password":"hunter2"}`), true, nil},
		// A scoped override counts a repository's name only when the daemon
		// reports a digest of that repository for the image, not because
		// the client wrote one.
		{"override, digest reference written by the client", trustedOverride, req("POST", "/containers/create", `{"Image":"trusted/app@sha256:`+strings.Repeat("f", 64)+`"}`), false, []string{"denied"}},
		{"override, image pulled from the repository", trustedOverride, req("POST", "/containers/create", `{"Image":"trusted/app:pulled"}`), true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := scoring.Default()
			if tt.pol != nil {
				tt.pol(pol)
			}
			var scans atomic.Int32
			p, rec := newPlugin(t, pol, images(), fakeDB{}, &scans)
			res := p.AuthZReq(tt.r)
			if res.Allow != tt.allow {
				t.Fatalf("allow %v, want %v (%s)", res.Allow, tt.allow, res.Msg)
			}
			for _, m := range tt.msg {
				if !strings.Contains(res.Msg, m) {
					t.Errorf("message %q lacks %q", res.Msg, m)
				}
			}
			for _, r := range rec.recs {
				if strings.Contains(fmt.Sprintf("%+v", r), "hunter2") {
					t.Fatal("an /auth body reached the audit trail")
				}
			}
		})
	}
}

func TestOnError(t *testing.T) {
	for _, oe := range []scoring.OnError{scoring.OnErrorDeny, scoring.OnErrorAllow} {
		for name, setup := range map[string]func() (*fakeDaemon, Database){
			"stale database": func() (*fakeDaemon, Database) {
				return images(), fakeDB{err: errors.New("database older than db.max_age")}
			},
			"daemon unreachable": func() (*fakeDaemon, Database) {
				d := images()
				d.failing = errors.New("connection refused")
				return d, fakeDB{}
			},
		} {
			t.Run(string(oe)+"/"+name, func(t *testing.T) {
				pol := scoring.Default()
				pol.OnError = oe
				d, db := setup()
				var scans atomic.Int32
				p, rec := newPlugin(t, pol, d, db, &scans)
				res := p.AuthZReq(req("POST", "/containers/create", `{"Image":"app:ok"}`))
				if res.Allow != (oe == scoring.OnErrorAllow) {
					t.Fatalf("allow %v under on_error %s (%s)", res.Allow, oe, res.Msg)
				}
				if !res.Allow && !strings.Contains(res.Msg, "on_error") {
					t.Fatalf("message names no fix: %s", res.Msg)
				}
				if len(rec.recs) != 1 || rec.recs[0].Error == "" {
					t.Fatalf("audit %+v", rec.recs)
				}
			})
		}
	}
}

func TestPullAfterRemovesAndQuarantines(t *testing.T) {
	var scans atomic.Int32
	d := images()
	p, rec := newPlugin(t, scoring.Default(), d, fakeDB{}, &scans)
	r := req("POST", "/v1.41/images/create?fromImage=app&tag=vuln", "")
	r.ResponseStatusCode = 200
	res := p.AuthZRes(r)
	if res.Allow || !strings.Contains(res.Msg, "removed and quarantined") {
		t.Fatalf("%+v", res)
	}
	// The pulled name first, then every other name of the same image.
	if !slices.Equal(d.untags, []string{"app:vuln", "unreachable/app:vuln"}) {
		t.Fatalf("untags %v", d.untags)
	}
	// A streamed pull reports status 0 and is checked the same way.
	d.images["app:vuln2"] = ImageInfo{ID: "sha256:vuln2", RepoTags: []string{"app:vuln2"}}
	r2 := req("POST", "/images/create?fromImage=app&tag=vuln2", "")
	if res := p.AuthZRes(r2); res.Allow || d.images["app:vuln2"].ID != "" {
		t.Fatalf("a streamed pull was not checked: %+v", res)
	}

	// The same reference is refused before the daemon pulls it again.
	if res := p.AuthZReq(req("POST", "/images/create?fromImage=docker.io/library/app&tag=vuln", "")); res.Allow {
		t.Fatal("a quarantined reference was pulled again")
	}
	// If another name still holds the image, it cannot run.
	d.images["other:name"] = ImageInfo{ID: "sha256:vuln"}
	if res := p.AuthZReq(req("POST", "/containers/create", `{"Image":"other:name"}`)); res.Allow {
		t.Fatal("a quarantined image ran")
	}
	// Approving its findings lifts the quarantine.
	pol := scoring.Default()
	pol.Threshold = 100000
	p.SetPolicy(pol)
	if res := p.AuthZReq(req("POST", "/containers/create", `{"Image":"other:name"}`)); !res.Allow {
		t.Fatalf("still quarantined under a policy that allows it: %s", res.Msg)
	}
	if n := len(rec.recs); n < 4 {
		t.Fatalf("%d audit records", n)
	}
	// A failed pull is left alone.
	r.ResponseStatusCode = 500
	if res := p.AuthZRes(r); !res.Allow {
		t.Fatal("a failed pull was acted on")
	}
}

func TestPrune(t *testing.T) {
	var scans atomic.Int32
	p, _ := newPlugin(t, scoring.Default(), images(), fakeDB{}, &scans)
	p.AuthZReq(req("POST", "/containers/create", `{"Image":"app:vuln"}`))
	v := p.opts.Verdicts
	if n, err := v.Prune(7); err != nil || n != 0 {
		t.Fatalf("pruned %d of the current revision: %v", n, err)
	}
	if !v.Scanned("sha256:vuln", 7) {
		t.Fatal("report lost")
	}
	if n, err := v.Prune(8); err != nil || n != 2 {
		t.Fatalf("pruned %d, want the report and the verdict: %v", n, err)
	}
	if v.Scanned("sha256:vuln", 7) || v.Cached("sha256:vuln", 7, scoring.Default().Digest()) != nil {
		t.Fatal("old revision kept")
	}
}

func TestConcurrentRequestsScanOnce(t *testing.T) {
	var scans atomic.Int32
	p, _ := newPlugin(t, scoring.Default(), images(), fakeDB{}, &scans)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.AuthZReq(req("POST", "/containers/create", `{"Image":"app:vuln"}`))
		}()
	}
	wg.Wait()
	if n := scans.Load(); n != 1 {
		t.Fatalf("%d scans for one image", n)
	}
}

// TestPullAllTagsRemovesEveryFailingTag: a pull of a bare repository
// name brings every tag; each tag of a failing image goes, whether the
// pull brought one image or several, and the clean ones stay.
func TestPullAllTagsRemovesEveryFailingTag(t *testing.T) {
	for _, tt := range []struct {
		name      string
		images    map[string]ImageInfo
		wantGone  []string
		wantStays []string
	}{
		{"one image under two tags", map[string]ImageInfo{
			"lib:1":      {ID: "sha256:vuln", RepoTags: []string{"lib:1", "lib:latest"}},
			"lib:latest": {ID: "sha256:vuln", RepoTags: []string{"lib:1", "lib:latest"}},
		}, []string{"lib:1", "lib:latest"}, nil},
		{"a failing and a clean image", map[string]ImageInfo{
			"lib:1":  {ID: "sha256:vuln", RepoTags: []string{"lib:1", "other:keep"}},
			"lib:ok": {ID: "sha256:ok", RepoTags: []string{"lib:ok"}},
		}, []string{"lib:1"}, []string{"lib:ok"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var scans atomic.Int32
			d := &fakeDaemon{images: tt.images}
			p, _ := newPlugin(t, scoring.Default(), d, fakeDB{}, &scans)
			if res := p.AuthZRes(req("POST", "/v1.41/images/create?fromImage=lib", "")); res.Allow {
				t.Fatal("the failing image was allowed")
			}
			for _, r := range tt.wantGone {
				if !slices.Contains(d.untags, r) {
					t.Errorf("%s was not removed (untags %v)", r, d.untags)
				}
			}
			for _, r := range append(tt.wantStays, "other:keep") {
				if slices.Contains(d.untags, r) {
					t.Errorf("%s was removed", r)
				}
			}
		})
	}
}

// TestWhitelistExpiryEndsCachedVerdict: a verdict that an expiring
// whitelist entry allowed must not outlive the entry in the cache.
func TestWhitelistExpiryEndsCachedVerdict(t *testing.T) {
	pol := scoring.Default()
	day := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 30; i++ {
		pol.Whitelist = append(pol.Whitelist, scoring.Entry{ID: fmt.Sprintf("CVE-2019-%04d", i), Expires: day})
	}
	var scans atomic.Int32
	p, _ := newPlugin(t, pol, images(), fakeDB{}, &scans)
	create := req("POST", "/containers/create", `{"Image":"app:vuln"}`)
	for _, tt := range []struct {
		now   time.Time
		allow bool
	}{
		{day.Add(-time.Hour), true},
		{day.Add(23 * time.Hour), true}, // the expiry day is the last good day
		{day.Add(25 * time.Hour), false},
	} {
		p.opts.Verdicts.now = func() time.Time { return tt.now }
		if res := p.AuthZReq(create); res.Allow != tt.allow {
			t.Fatalf("at %s: allow %v, want %v (%s)", tt.now, res.Allow, tt.allow, res.Msg)
		}
	}
	if n := scans.Load(); n != 1 {
		t.Fatalf("%d scans: the report is reused, only the verdict is recomputed", n)
	}
}

// TestCreateVerifiedOnResponse: the request phase judged a name; the
// response phase judges the image ID the daemon's new container runs, and
// removes the container when it fails (the name may have moved between).
func TestCreateVerifiedOnResponse(t *testing.T) {
	created := func(body string, status int) authorization.Request {
		r := req("POST", "/v1.41/containers/create?name=x", `{"Image":"app:ok"}`)
		r.ResponseStatusCode, r.ResponseBody = status, []byte(body)
		return r
	}
	tests := []struct {
		name    string
		r       authorization.Request
		allow   bool
		removed []string
	}{
		{"the container runs a failing image", created(`{"Id":"oldvuln","Warnings":[]}`, 201), false, []string{"oldvuln"}},
		{"the container runs a clean image", created(`{"Id":"oldok","Warnings":[]}`, 201), true, nil},
		{"the create failed", created(`{"message":"No such image"}`, 404), true, nil},
		{"the response names no container", created(`{}`, 201), false, nil},
		{"the response is not JSON", created(`<html>`, 201), false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := images()
			var scans atomic.Int32
			p, rec := newPlugin(t, scoring.Default(), d, fakeDB{}, &scans)
			res := p.AuthZRes(tt.r)
			if res.Allow != tt.allow {
				t.Fatalf("allow %v, want %v (%s)", res.Allow, tt.allow, res.Msg)
			}
			if !slices.Equal(d.removed, tt.removed) {
				t.Fatalf("removed %v, want %v", d.removed, tt.removed)
			}
			if !tt.allow && len(tt.removed) > 0 {
				if !strings.Contains(res.Msg, "run of app:vuln denied") || !strings.Contains(res.Msg, "container was removed") {
					t.Fatalf("message %q", res.Msg)
				}
				if r := rec.recs[len(rec.recs)-1]; r.Reason != "removed after create" || r.Phase != "response" || r.ImageID != "sha256:vuln" {
					t.Fatalf("audit record %+v", r)
				}
			}
		})
	}
}

// TestPulledByEvent: a pull no gate saw (a classic build's base, a pull
// that ended while the plugin was down) is decided from the daemon's
// event; while a gated pull of the repository is under way, its response
// phase decides first, and the event finds nothing left.
func TestPulledByEvent(t *testing.T) {
	ctx := context.Background()
	d := images()
	var scans atomic.Int32
	p, rec := newPlugin(t, scoring.Default(), d, fakeDB{}, &scans)
	p.PulledByEvent(ctx, "app:ok")
	if len(d.untags) != 0 || len(rec.recs) != 0 {
		t.Fatalf("a clean pull: untags %v, records %d", d.untags, len(rec.recs))
	}
	// The image got a second name while the pull ran: that goes too.
	d.images["elsewhere/copy:1"] = d.images["app:vuln"]
	p.PulledByEvent(ctx, "app:vuln")
	if !slices.Equal(d.untags, []string{"app:vuln", "elsewhere/copy:1", "unreachable/app:vuln"}) {
		t.Fatalf("a failing pull: untags %v", d.untags)
	}
	if r := rec.recs[len(rec.recs)-1]; r.Phase != "event" || r.Decision != "deny" || r.Reason != "removed after pull" {
		t.Fatalf("record %+v", r)
	}
	if _, ok := p.opts.Verdicts.QuarantinedRef(normalize("app:vuln"), hostPlatform()); !ok {
		t.Fatal("not quarantined")
	}

	// A gated pull of the repository is under way.
	if res := p.AuthZReq(req("POST", "/images/create?fromImage=other/app&tag=1", "")); !res.Allow {
		t.Fatal(res.Msg)
	}
	d.mu.Lock()
	d.images["other/app:1"] = ImageInfo{ID: "sha256:vuln2", RepoTags: []string{"other/app:1"}}
	d.mu.Unlock()
	done := make(chan struct{})
	go func() { p.PulledByEvent(ctx, "other/app:1"); close(done) }()
	select {
	case <-done:
		t.Fatal("the event did not wait for the response phase")
	case <-time.After(300 * time.Millisecond):
	}
	before := len(rec.recs)
	res := req("POST", "/images/create?fromImage=other/app&tag=1", "")
	if r := p.AuthZRes(res); r.Allow {
		t.Fatal("the response phase allowed a failing pull")
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the event still waits after the response")
	}
	if n := len(rec.recs) - before; n != 1 {
		t.Fatalf("%d records for one failing pull", n)
	}
	if !p.DecidesPulls() {
		t.Fatal("the pull gate is on")
	}
	off := scoring.Default()
	off.Actions = []scoring.Action{scoring.ActionRun}
	p.SetPolicy(off)
	if p.DecidesPulls() {
		t.Fatal("decides pulls with the pull gate off")
	}
}

// An index of two platforms on the containerd store, one clean (the
// host's), one failing: each action is judged on the platforms it brings
// into play, and a pull removes only the failing platform.
func TestPlatformsOfOneImage(t *testing.T) {
	host := hostPlatform()
	if host == "linux/s390x" {
		t.Skip("the test's failing platform is this host's")
	}
	var scans atomic.Int32
	d := images()
	d.images["multi:1"] = ImageInfo{ID: "sha256:multi", RepoTags: []string{"multi:1"}, Platforms: []string{host, "linux/s390x"}}
	p, _ := newPlugin(t, scoring.Default(), d, fakeDB{}, &scans)
	s390 := url.QueryEscape(`{"os":"linux","architecture":"s390x"}`)
	hostJSON := url.QueryEscape(fmt.Sprintf(`{"os":"linux","architecture":%q}`, strings.TrimPrefix(host, "linux/")))
	for _, tc := range []struct {
		name, method, uri, body string
		allow                   bool
	}{
		{"create of the failing platform", "POST", "/containers/create?platform=linux/s390x", `{"Image":"multi:1"}`, false},
		{"create of the host's platform", "POST", "/containers/create", `{"Image":"multi:1"}`, true},
		{"create of a platform spelled otherwise", "POST", "/containers/create?platform=linux/S390X", `{"Image":"multi:1"}`, false},
		{"push of the whole index", "POST", "/images/multi/push?tag=1", "", false},
		{"push of the failing platform", "POST", "/images/multi/push?tag=1&platform=" + s390, "", false},
		{"push of the host's platform", "POST", "/images/multi/push?tag=1&platform=" + hostJSON, "", true},
		{"an unreadable platform", "POST", "/containers/create?platform=linux/arm64/v8/x/y", `{"Image":"multi:1"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := p.AuthZReq(req(tc.method, tc.uri, tc.body))
			if res.Allow != tc.allow {
				t.Fatalf("allow %v, want %v: %s", res.Allow, tc.allow, res.Msg)
			}
			if !res.Allow && strings.Contains(tc.uri, "s390x") && !strings.Contains(res.Msg, "linux/s390x") {
				t.Fatalf("the deny does not name the platform: %s", res.Msg)
			}
			if res.Allow && strings.Contains(tc.uri, "/push") {
				p.AuthZRes(req(tc.method, tc.uri, tc.body)) // ends the push hold
			}
		})
	}

	// A pull of the failing platform removes that platform only.
	r := req("POST", "/images/create?fromImage=multi&tag=1&platform=linux/s390x", "")
	r.ResponseStatusCode = 200
	if res := p.AuthZRes(r); res.Allow || !strings.Contains(res.Msg, "the other platforms stay") {
		t.Fatalf("%+v", res)
	}
	if len(d.untags) != 0 || !slices.Equal(d.removed, []string{"sha256:multi@linux/s390x"}) {
		t.Fatalf("untagged %v, removed %v", d.untags, d.removed)
	}
	// Its quarantine holds pulls of that platform, not of the host's.
	if res := p.AuthZReq(req("POST", "/images/create?fromImage=multi&tag=1&platform=linux/s390x", "")); res.Allow {
		t.Fatal("the quarantined platform was pulled again")
	}
	if res := p.AuthZReq(req("POST", "/images/create?fromImage=multi&tag=1", "")); !res.Allow {
		t.Fatalf("a pull of the host's platform was refused: %s", res.Msg)
	}
	// The container the daemon made runs the platform it chose.
	d.containers = map[string]Container{"c1": {ID: "c1", Image: "multi:1", ImageID: "sha256:multi", Platform: "linux/s390x"}}
	cr := req("POST", "/containers/create", `{"Image":"multi:1"}`)
	cr.ResponseStatusCode, cr.ResponseBody = 201, []byte(`{"Id":"c1"}`)
	if res := p.AuthZRes(cr); res.Allow {
		t.Fatal("a container of the failing platform survived the response phase")
	}
	// The daemon's word on a container's platform counts even when the
	// image's inspect does not list that platform: it ran it.
	d.images["hostonly:1"] = ImageInfo{ID: "sha256:hostonly", RepoTags: []string{"hostonly:1"}, Platforms: []string{host}}
	d.containers["c2"] = Container{ID: "c2", Image: "hostonly:1", ImageID: "sha256:hostonly", Platform: "linux/s390x"}
	cr2 := req("POST", "/containers/create", `{"Image":"hostonly:1"}`)
	cr2.ResponseStatusCode, cr2.ResponseBody = 201, []byte(`{"Id":"c2"}`)
	if res := p.AuthZRes(cr2); res.Allow {
		t.Fatal("a container of a platform the inspect did not list passed unjudged")
	}
	// So does a pull's platform.
	d.images["hostonly:2"] = ImageInfo{ID: "sha256:hostonly2", RepoTags: []string{"hostonly:2"}, Platforms: []string{host}}
	pr := req("POST", "/images/create?fromImage=hostonly&tag=2&platform=linux/s390x", "")
	pr.ResponseStatusCode = 200
	if res := p.AuthZRes(pr); res.Allow {
		t.Fatal("the pulled platform passed unjudged because the inspect did not list it")
	}
}
