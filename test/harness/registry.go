package harness

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// Registry is a private docker-registry (Debian's distribution v2) on
// 127.0.0.1.
type Registry struct {
	Addr string
	Proc *Proc
}

// StartRegistry starts a registry with its storage in a private directory.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	Require(t, "docker-registry")
	dir := TempDir(t, "divds-r-")
	port := FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	WriteFile(t, filepath.Join(dir, "config.yml"), []byte(cfg))
	p := Start(t, "docker-registry", filepath.Join(dir, "registry.log"), nil, "docker-registry", "serve", filepath.Join(dir, "config.yml"))
	r := &Registry{Addr: addr, Proc: p}
	WaitFor(t, "the registry at "+addr, 30*time.Second, func() bool {
		if p.Exited() {
			t.Fatalf("docker-registry exited:\n%s", p.Tail())
		}
		res, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
	return r
}

// Digest returns the manifest digest the registry serves for repo:tag.
func (r *Registry) Digest(t testing.TB, repo, tag string) string {
	t.Helper()
	req, err := http.NewRequest("HEAD", "http://"+r.Addr+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	d := res.Header.Get("Docker-Content-Digest")
	if res.StatusCode != 200 || d == "" {
		t.Fatalf("HEAD %s/%s:%s: %s, digest %q", r.Addr, repo, tag, res.Status, d)
	}
	return d
}
