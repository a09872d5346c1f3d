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
