package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/divds/divds/test/harness"
)

// Platforms are part of an image's identity. On the containerd image store
// (Docker 29's default) one image ID, the index digest, covers every
// platform of a tag: a verdict for the host's platform says nothing of
// linux/arm64's. Each row below uses a tag whose linux/amd64 image is
// clean and whose linux/arm64 image is denied; on the containerd store all
// four got through before verdicts were kept per platform. On the classic
// store a tag names one platform's image, and the same rows must hold.

// seedSplit writes the two-platform tag into the registry, as a
// multi-platform build elsewhere would push it: linux/amd64 clean,
// linux/arm64 denied.
func (g *gate) seedSplit(t *testing.T, ref string) {
	t.Helper()
	g.seedIndex(t, ref, map[string]string{"amd64": g.alpineTar(t), "arm64": g.bionicTar(t)})
}

// bothPlatforms starts a gate with the default policy and a local copy of
// the two-platform tag, pulled under mode: audit: on the containerd store
// the tag then holds both platforms, on the classic store arm64's image.
func bothPlatforms(t *testing.T) (*gate, string) {
	t.Helper()
	g := startGate(t, "mode: audit\n")
	ref := g.reg.Addr + "/multi:1"
	g.seedSplit(t, ref)
	g.d.MustCLI(t, "pull", "--platform", "linux/amd64", ref)
	g.d.MustCLI(t, "pull", "--platform", "linux/arm64", ref)
	// Each pull is decided again from its event, under the policy in
	// force then: the reload waits for both.
	harness.WaitFor(t, "both pull events", time.Minute, func() bool { return g.p.Metric("divds_pull_events_total") >= 2 })
	g.reload(t, "")
	return g, ref
}

func TestPlatformPull(t *testing.T) {
	g := startGate(t, "")
	defer g.dumpOnFailure(t)
	ref := g.reg.Addr + "/multi:1"
	g.seedSplit(t, ref)
	// The CLI reports a streamed pull as done; the arm64 image must be
	// gone, and cannot run.
	g.cli("pull", "--platform", "linux/arm64", ref)
	out, err := g.cli("create", "--platform", "linux/arm64", "--network", "none", ref, "/bin/true")
	mustFail(t, "create of the pulled linux/arm64 image", out, err, "denied")
	// The clean platform still comes and runs.
	if out, err := g.cli("pull", "--platform", "linux/amd64", ref); err != nil {
		t.Fatalf("pull of linux/amd64: %v\n%s", err, out)
	}
	if out, err := g.cli("create", "--platform", "linux/amd64", "--network", "none", ref, "/bin/true"); err != nil {
		t.Fatalf("create of linux/amd64: %v\n%s", err, out)
	}
}

func TestPlatformCreate(t *testing.T) {
	g, ref := bothPlatforms(t)
	defer g.dumpOnFailure(t)
	out, err := g.cli("create", "--platform", "linux/arm64", "--network", "none", ref, "/bin/true")
	mustFail(t, "create of linux/arm64", out, err, "denied")
	if g.d.Engine.ContainerdStore {
		// The host's platform, linux/amd64, is clean.
		if out, err := g.cli("create", "--network", "none", ref, "/bin/true"); err != nil {
			t.Fatalf("create of the host's platform: %v\n%s", err, out)
		}
	}
}

func TestPlatformPush(t *testing.T) {
	g, ref := bothPlatforms(t)
	defer g.dumpOnFailure(t)
	whole := g.reg.Addr + "/pushed:all"
	g.d.MustCLI(t, "tag", ref, whole)
	// A push of the whole tag ships every platform present.
	out, err := g.cli("push", whole)
	mustFail(t, "push of the two-platform tag", out, err, "denied")
	g.mustNotBeInRegistry(t, whole)
	if !g.d.Engine.ContainerdStore {
		return
	}
	// A push of one platform (API 1.46 on; the Debian CLI has no flag).
	one := g.reg.Addr + "/pushed:arm64"
	g.d.MustCLI(t, "tag", ref, one)
	code, body := g.pushPlatform(t, one, `{"os":"linux","architecture":"arm64"}`)
	if code == 200 && !strings.Contains(body, "denied") {
		t.Errorf("push of linux/arm64 answered %d:\n%s", code, body)
	}
	g.mustNotBeInRegistry(t, one)
	clean := g.reg.Addr + "/pushed:amd64"
	g.d.MustCLI(t, "tag", ref, clean)
	if code, body := g.pushPlatform(t, clean, `{"os":"linux","architecture":"amd64"}`); code != 200 || strings.Contains(body, `"error"`) {
		t.Fatalf("push of linux/amd64 answered %d:\n%s", code, body)
	}
}

// pushPlatform pushes one platform of a tag through the raw API.
func (g *gate) pushPlatform(t *testing.T, ref, platform string) (int, string) {
	t.Helper()
	i := strings.LastIndex(ref, ":")
	q := url.Values{"tag": {ref[i+1:]}, "platform": {platform}}
	auth := map[string]string{"X-Registry-Auth": base64.URLEncoding.EncodeToString([]byte("{}"))}
	return rawRequest(t, g.d.Sock, "POST /v1.56/images/"+ref[:i]+"/push?"+q.Encode(), auth, nil, false)
}

// mustNotBeInRegistry fails when ref reached the registry.
func (g *gate) mustNotBeInRegistry(t *testing.T, ref string) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if desc, err := remote.Head(r); err == nil {
		raw, _ := json.Marshal(desc)
		t.Fatalf("%s reached the registry: %s", ref, fmt.Sprint(string(raw)))
	}
}
