package authz

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	create := []byte(`{"Image":"bionic:vuln","Cmd":["true"]}`)
	service := []byte(`{"Name":"s1","TaskTemplate":{"ContainerSpec":{"Image":"reg/app:1@sha256:abc","Args":["sleep","1"]}},"Mode":{"Replicated":{"Replicas":1}}}`)
	tests := []struct {
		name    string
		method  string
		uri     string
		headers map[string]string
		body    []byte
		action  Action
		ref     string // PullRef, Name or Image
		bad     bool
	}{
		{"pull", "POST", "/v1.41/images/create?fromImage=bionic&tag=vuln", nil, nil, ActPull, "bionic:vuln", false},
		{"no version prefix", "POST", "/images/create?fromImage=bionic&tag=vuln", nil, nil, ActPull, "bionic:vuln", false},
		{"old API version", "POST", "/v1.12/images/create?fromImage=bionic&tag=vuln", nil, nil, ActPull, "bionic:vuln", false},
		{"zero-padded version", "POST", "/v1.041/images/create?fromImage=bionic&tag=vuln", nil, nil, ActPull, "bionic:vuln", false},
		{"major-only version", "POST", "/v1/images/create?fromImage=bionic&tag=vuln", nil, nil, ActPull, "bionic:vuln", false},
		{"three-part version", "POST", "/v1.40.5/images/app/push?tag=vuln", nil, nil, ActPush, "app", false},
		{"doubled dots in version", "POST", "/v1..41/containers/create", nil, []byte(`{"Image":"bionic:vuln"}`), ActCreate, "bionic:vuln", false},
		{"a path that merely starts with v", "POST", "/version", nil, nil, ActOther, "", false},
		{"percent-encoded path", "POST", "/v1.41/%69mages/%63reate?fromImage=bionic&tag=vuln", nil, nil, ActPull, "bionic:vuln", false},
		{"encoded slash in name, lower-case hex", "POST", "/v1.41/images/127.0.0.1:5000%2fbionic/push?tag=vuln", nil, nil, ActPush, "127.0.0.1:5000/bionic", false},
		{"encoded slash in name, upper-case hex", "POST", "/v1.41/images/127.0.0.1:5000%2Fbionic/push?tag=vuln", nil, nil, ActPush, "127.0.0.1:5000/bionic", false},
		{"absolute URI", "POST", "http://localhost/v1.41/images/create?fromImage=bionic&tag=vuln", nil, nil, ActPull, "bionic:vuln", false},
		{"dot segments", "POST", "/v1.41/containers/../images/./create?fromImage=bionic&tag=vuln", nil, nil, ActPull, "bionic:vuln", false},
		{"double slashes", "POST", "//v1.41//images//create?fromImage=bionic&tag=vuln", nil, nil, ActPull, "bionic:vuln", false},
		{"swapped parameters", "POST", "/v1.41/images/create?tag=vuln&fromImage=bionic", nil, nil, ActPull, "bionic:vuln", false},
		{"duplicated, same value", "POST", "/v1.41/images/create?fromImage=bionic&fromImage=bionic&tag=vuln", nil, nil, ActPull, "bionic:vuln", false},
		{"duplicated, other value", "POST", "/v1.41/images/create?fromImage=alpine&fromImage=bionic&tag=vuln", nil, nil, "", "", true},
		{"form body overrides the query", "POST", "/v1.41/images/create?fromImage=alpine", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, nil, "", "", true},
		{"multipart form body", "POST", "/v1.41/images/create?fromImage=alpine", map[string]string{"content-type": "multipart/form-data; boundary=x"}, nil, "", "", true},
		{"both fromImage and fromSrc", "POST", "/v1.41/images/create?fromImage=a&fromSrc=-", nil, nil, "", "", true},
		{"neither", "POST", "/v1.41/images/create", nil, nil, "", "", true},
		{"import", "POST", "/v1.41/images/create?fromSrc=-&repo=x", nil, nil, ActImport, "", false},
		{"pull by digest", "POST", "/images/create?fromImage=alpine&tag=sha256:abababababababababababababababababababababababababababababababab", nil, nil, ActPull, "alpine@sha256:abababababababababababababababababababababababababababababababab", false},
		// The daemon combines fromImage and tag so: the tag parameter
		// replaces a tag in fromImage; a digest replaces the tag.
		{"tag only in fromImage", "POST", "/images/create?fromImage=reg:5000/app:vuln", nil, nil, ActPull, "reg:5000/app:vuln", false},
		{"tag in fromImage and in tag", "POST", "/images/create?fromImage=app:vuln&tag=vuln", nil, nil, ActPull, "app:vuln", false},
		{"another tag in fromImage", "POST", "/images/create?fromImage=app:other&tag=vuln", nil, nil, ActPull, "app:vuln", false},
		{"digest in tag, tag in fromImage", "POST", "/images/create?fromImage=app:other&tag=sha256:abababababababababababababababababababababababababababababababab", nil, nil, ActPull, "app@sha256:abababababababababababababababababababababababababababababababab", false},
		{"digest in fromImage, tag in tag", "POST", "/images/create?fromImage=app@sha256:abababababababababababababababababababababababababababababababab&tag=v", nil, nil, ActPull, "app:v@sha256:abababababababababababababababababababababababababababababababab", false},
		{"invalid digest in tag", "POST", "/images/create?fromImage=alpine&tag=sha256:abc", nil, nil, "", "", true},
		// dockerd trims one trailing ':' and then pulls every tag.
		{"empty tag in fromImage", "POST", "/images/create?fromImage=reg:5000/app:", nil, nil, ActPull, "reg:5000/app", false},
		{"empty tag in fromImage, tag given", "POST", "/images/create?fromImage=app:&tag=vuln", nil, nil, ActPull, "app:vuln", false},
		{"unparseable fromImage", "POST", "/images/create?fromImage=App::x", nil, nil, "", "", true},
		// dockerd reads the request line with ParseRequestURI: a '#'
		// stays in the query, where url.Parse would cut it.
		{"hash in the query", "POST", "/images/create?fromSrc=-&#=&fromImage=bionic", nil, nil, "", "", true},
		{"hash in the path", "POST", "/images/create#x?fromImage=bionic", nil, nil, "", "", true},
		{"control byte", "POST", "/images/create?fromImage=bionic%00&tag=\x01", nil, nil, "", "", true},
		{"raw control byte", "POST", "/images/create?fromImage=bio\x7fnic", nil, nil, "", "", true},
		{"raw semicolon", "POST", "/images/create?fromSrc=-;fromImage=bionic", nil, nil, "", "", true},
		{"push", "POST", "/v1.41/images/registry:5000/app/push?tag=1", nil, nil, ActPush, "registry:5000/app", false},
		{"push duplicated tag", "POST", "/v1.41/images/app/push?tag=1&tag=2", nil, nil, "", "", true},
		{"create", "POST", "/v1.41/containers/create", nil, create, ActCreate, "bionic:vuln", false},
		{"create with name", "POST", "/v1.41/containers/create?name=x", nil, create, ActCreate, "bionic:vuln", false},
		{"create without body", "POST", "/v1.41/containers/create", nil, nil, "", "", true},
		{"create, body not JSON", "POST", "/v1.41/containers/create", nil, []byte("Image=bionic"), "", "", true},
		{"create, no image", "POST", "/v1.41/containers/create", nil, []byte(`{"Cmd":["true"]}`), "", "", true},
		{"create, image twice", "POST", "/v1.41/containers/create", nil, []byte(`{"Image":"alpine","image":"bionic"}`), "", "", true},
		{"create, two values", "POST", "/v1.41/containers/create", nil, []byte(`{"Image":"alpine"}{"Image":"bionic"}`), "", "", true},
		{"create, lower-case method", "post", "/v1.41/containers/create", nil, create, ActCreate, "bionic:vuln", false},
		{"create, image null", "POST", "/v1.41/containers/create", nil, []byte(`{"Image":null}`), "", "", true},
		{"create, image not a string", "POST", "/v1.41/containers/create", nil, []byte(`{"Image":["alpine"]}`), "", "", true},
		{"create, body an array", "POST", "/v1.41/containers/create", nil, []byte(`[{"Image":"alpine"}]`), "", "", true},
		{"service create", "POST", "/v1.41/services/create", nil, service, ActService, "reg/app:1@sha256:abc", false},
		{"service update", "POST", "/v1.41/services/s1/update?version=12", nil, service, ActService, "reg/app:1@sha256:abc", false},
		{"service update, encoded", "POST", "/v1.41/%73ervices/s1/%75pdate?version=12", nil, service, ActService, "reg/app:1@sha256:abc", false},
		{"service rollback", "POST", "/v1.41/services/s1/update?version=12&rollback=previous", nil, []byte(`{}`), ActService, "", false},
		{"service create with rollback", "POST", "/v1.41/services/create?rollback=previous", nil, service, ActService, "reg/app:1@sha256:abc", false},
		{"service rollback, other value", "POST", "/v1.41/services/s1/update?rollback=next", nil, service, "", "", true},
		{"service rollback, twice", "POST", "/v1.41/services/s1/update?rollback=previous&rollback=none", nil, service, "", "", true},
		{"service without body", "POST", "/v1.41/services/create", nil, nil, "", "", true},
		{"service, plugin spec", "POST", "/v1.41/services/create", nil, []byte(`{"TaskTemplate":{"PluginSpec":{"Name":"x"}}}`), "", "", true},
		{"service, image twice", "POST", "/v1.41/services/create", nil, []byte(`{"TaskTemplate":{"ContainerSpec":{"Image":"a","IMAGE":"b"}}}`), "", "", true},
		{"service, spec twice", "POST", "/v1.41/services/create", nil, []byte(`{"TaskTemplate":{"ContainerSpec":{"Image":"a"},"containerspec":{"Image":"b"}}}`), "", "", true},
		{"service, template twice", "POST", "/v1.41/services/create", nil, []byte(`{"TaskTemplate":{"ContainerSpec":{"Image":"a"}},"tasktemplate":{}}`), "", "", true},
		{"service, spec not an object", "POST", "/v1.41/services/create", nil, []byte(`{"TaskTemplate":{"ContainerSpec":"a"}}`), "", "", true},
		{"service inspect", "GET", "/v1.41/services/s1", nil, nil, ActOther, "", false},
		{"start", "POST", "/v1.41/containers/abc123/start", nil, nil, ActStart, "abc123", false},
		{"restart", "POST", "/v1.41/containers/abc123/restart?t=1", nil, nil, ActStart, "abc123", false},
		// dockerd's container routes take {name:.*}: a link alias.
		{"start of a link alias", "POST", "/v1.41/containers/web/db/start", nil, nil, ActStart, "web/db", false},
		{"restart of a link alias", "POST", "/containers/web/db/restart", nil, nil, ActStart, "web/db", false},
		{"exec", "POST", "/v1.41/containers/web/exec", nil, []byte(`{"Cmd":["sh"]}`), ActExec, "web", false},
		{"exec of a link alias", "POST", "/v1.41/containers/web/db/exec", nil, nil, ActExec, "web/db", false},
		{"exec start", "POST", "/v1.41/exec/abc/start", nil, nil, ActOther, "", false},
		{"rename", "POST", "/v1.41/containers/web/rename?name=x", nil, nil, ActRename, "", false},
		// The holds read the query: a form body would name other targets.
		{"rename, form body", "POST", "/v1.41/containers/web/rename?name=x", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, nil, "", "", true},
		{"tag, form body", "POST", "/v1.41/images/x/tag?repo=elsewhere", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, nil, "", "", true},
		{"commit, form body", "POST", "/v1.41/commit?container=c&repo=elsewhere", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, nil, "", "", true},
		{"commit, JSON body", "POST", "/v1.41/commit?container=c&repo=app", map[string]string{"Content-Type": "application/json"}, []byte(`{}`), ActCommit, "", false},
		{"container update", "POST", "/v1.41/containers/web/update", nil, nil, ActOther, "", false},
		{"network create", "POST", "/v1.41/networks/create", nil, nil, ActOther, "", false},
		{"swarm init", "POST", "/v1.41/swarm/init", nil, nil, ActSwarmJoin, "", false},
		{"swarm join", "POST", "/swarm/join", nil, nil, ActSwarmJoin, "", false},
		{"swarm update", "POST", "/swarm/update", nil, nil, ActOther, "", false},
		{"plugin create", "POST", "/v1.41/plugins/create?name=p", nil, nil, ActPluginCreate, "", false},
		// A gated verb on a path no route knows is refused by the gate.
		{"unknown create", "POST", "/v1.41/images/x/create", nil, nil, ActUnknown, "", false},
		{"unknown push", "PUT", "/v1.41/distribution/x/push", nil, nil, ActUnknown, "", false},
		{"unknown start", "POST", "/v1.41/start", nil, nil, ActUnknown, "", false},
		{"doubled version prefix", "POST", "/v1.41/v1.41/containers/create", nil, nil, ActUnknown, "", false},
		{"load", "POST", "/v1.41/images/load?quiet=1", nil, nil, ActLoad, "", false},
		{"build", "POST", "/v1.41/build?t=x", nil, nil, ActBuild, "", false},
		{"buildkit session", "POST", "/session", nil, nil, ActBuild, "", false},
		{"buildx grpc", "POST", "/grpc", nil, nil, ActBuild, "", false},
		{"ping", "HEAD", "/_ping", nil, nil, ActPing, "", false},
		{"auth", "POST", "/v1.41/auth", nil, []byte(`{"password":"secret"}`), ActAuth, "", false},
		{"plugin install", "POST", "/v1.41/plugins/pull?remote=reg/plug:1&name=plug", nil, []byte(`[]`), ActPluginInstall, "reg/plug:1", false},
		{"plugin upgrade", "POST", "/v1.41/plugins/plug:latest/upgrade?remote=reg/plug:2", nil, []byte(`[]`), ActPluginInstall, "reg/plug:2", false},
		{"plugin install without remote", "POST", "/v1.41/plugins/pull?name=plug", nil, nil, "", "", true},
		{"plugin install, remote twice", "POST", "/v1.41/plugins/pull?remote=a&remote=b", nil, nil, "", "", true},
		{"push, form body", "POST", "/v1.41/images/app/push?tag=ok", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, nil, "", "", true},
		{"plugin install, form body", "POST", "/v1.41/plugins/pull?remote=a", map[string]string{"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, nil, "", "", true},
		{"service update, form body", "POST", "/v1.41/services/s1/update", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, nil, "", "", true},
		{"push, JSON content type", "POST", "/v1.41/images/app/push?tag=ok", map[string]string{"Content-Type": "application/json"}, nil, ActPush, "app", false},
		{"plugin disable", "POST", "/v1.41/plugins/divds:latest/disable", nil, nil, ActPluginAdmin, "divds:latest", false},
		{"plugin remove", "DELETE", "/v1.41/plugins/divds:latest?force=1", nil, nil, ActPluginAdmin, "divds:latest", false},
		{"list", "GET", "/v1.41/containers/json", nil, nil, ActOther, "", false},
		{"empty URI", "POST", "", nil, nil, "", "", true},
		{"empty method", "", "/images/create?fromImage=x", nil, nil, "", "", true},
		{"bad escape", "POST", "/images/create?fromImage=%zz", nil, nil, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.method, tt.uri, tt.headers, tt.body)
			if tt.bad {
				if err == nil || !errors.Is(err, ErrMalformed) {
					t.Fatalf("accepted as %+v, want refused", c)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Action != tt.action {
				t.Fatalf("action %s, want %s", c.Action, tt.action)
			}
			got := ""
			switch c.Action {
			case ActPull:
				got = c.PullRef()
			case ActPush, ActPluginAdmin, ActStart, ActExec:
				got = c.Name
			case ActCreate, ActService, ActPluginInstall:
				got = c.Image
			}
			if got != tt.ref {
				t.Fatalf("ref %q, want %q", got, tt.ref)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("POST", "/v1.41/images/create?fromImage=a&tag=b", "", []byte(nil))
	f.Add("POST", "/containers/create", "application/json", []byte(`{"Image":"x"}`))
	f.Add("POST", "/services/s/update?rollback=previous", "application/json", []byte(`{"TaskTemplate":{"ContainerSpec":{"Image":"x"}}}`))
	f.Add("DELETE", "http://h/v1.41/plugins/divds", "", []byte(nil))
	f.Fuzz(func(t *testing.T, method, uri, ct string, body []byte) {
		c, err := Parse(method, uri, map[string]string{"Content-Type": ct}, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error without ErrMalformed: %v", err)
			}
			return
		}
		if c.Action == ActCreate && strings.TrimSpace(c.Image) == "" {
			t.Fatal("create accepted without an image")
		}
		if c.Action == ActPull && c.Query.Get("fromImage") == "" {
			t.Fatal("pull accepted without fromImage")
		}
	})
}

func TestPushRef(t *testing.T) {
	d := "sha256:" + strings.Repeat("cd", 32)
	for _, tt := range []struct{ uri, want string }{
		{"/images/app/push?tag=1", "app:1"},
		{"/images/app/push", "app"},
		{"/images/reg:5000/app/push", "reg:5000/app"},
		{"/images/app:vuln/push", "app:vuln"},
		{"/images/app:other/push?tag=vuln", "app:vuln"},
		{"/images/app/push?tag=" + d, "app@" + d},
		{"/images/docker.io/library/app/push?tag=1", "app:1"},
	} {
		c, err := Parse("POST", tt.uri, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.uri, err)
		}
		if got := c.PushRef(); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.uri, got, tt.want)
		}
	}
}
