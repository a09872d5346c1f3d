package authz

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/divds/divds/scoring"
)

// TestPushHoldsItsRepository: from a push's request to its response, the
// tags of its repository cannot move, and a push waits for no change
// that is under way (it is refused, to be retried).
func TestPushHoldsItsRepository(t *testing.T) {
	type step struct {
		phase string // req or res
		r     string // method and URI
		allow bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"tag during a push", []step{
			{"req", "POST /v1.41/images/app/push?tag=ok", true},
			{"req", "POST /v1.41/images/other/tag?repo=app&tag=ok", false},
			{"req", "POST /v1.41/images/other/tag?repo=docker.io/library/app&tag=2", false},
			{"req", "POST /v1.41/images/other/tag?repo=elsewhere&tag=2", true},
			{"res", "POST /v1.41/images/app/push?tag=ok", true},
			{"req", "POST /v1.41/images/other/tag?repo=app&tag=ok", true},
		}},
		{"push during a tag", []step{
			{"req", "POST /v1.41/images/other/tag?repo=app&tag=ok", true},
			{"req", "POST /v1.41/images/app/push?tag=ok", false},
			{"res", "POST /v1.41/images/other/tag?repo=app&tag=ok", true},
			{"req", "POST /v1.41/images/app/push?tag=ok", true},
		}},
		{"load, build, commit and import during a push", []step{
			{"req", "POST /images/app/push?tag=ok", true},
			{"req", "POST /images/load", false},
			{"req", "POST /build?t=elsewhere:1&t=app:2", false},
			{"req", "POST /commit?container=c&repo=app&tag=3", false},
			{"req", "POST /images/create?fromSrc=-&repo=app&tag=4", false},
			// A pull of the repository brings what its registry holds.
			{"req", "POST /images/create?fromImage=app&tag=ok", true},
			{"req", "POST /build?t=elsewhere:1", true},
		}},
		{"a denied push holds nothing", []step{
			{"req", "POST /images/app/push?tag=vuln", false},
			{"req", "POST /images/other/tag?repo=app&tag=ok", true},
		}},
		{"a push of no such image holds nothing", []step{
			{"req", "POST /images/nope/push?tag=1", true},
			{"req", "POST /images/other/tag?repo=nope&tag=1", true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var scans atomic.Int32
			p, _ := newPlugin(t, scoring.Default(), images(), fakeDB{}, &scans)
			for i, s := range tt.steps {
				method, uri, _ := strings.Cut(s.r, " ")
				r := req(method, uri, "")
				var allowed bool
				var msg string
				if s.phase == "req" {
					res := p.AuthZReq(r)
					allowed, msg = res.Allow, res.Msg
				} else {
					res := p.AuthZRes(r)
					allowed, msg = res.Allow, res.Msg
				}
				if allowed != s.allow {
					t.Fatalf("step %d %s %s: allow %v, want %v (%s)", i, s.phase, s.r, allowed, s.allow, msg)
				}
				if !allowed && strings.Contains(s.r, "/tag?") && !strings.Contains(msg, "push (push of app") {
					t.Fatalf("step %d: message %q", i, msg)
				}
			}
		})
	}
}

func TestRepoLockExpires(t *testing.T) {
	l := newRepoLocks()
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	if err := l.beginChange([]string{"docker.io/library/app"}, "tag", quickTTL); err != nil {
		t.Fatal(err)
	}
	if err := l.beginPush("docker.io/library/app", "push"); err == nil {
		t.Fatal("a push got past a change under way")
	}
	// The tag's handler failed: no response phase ends its hold.
	now = now.Add(quickTTL + time.Second)
	if err := l.beginPush("docker.io/library/app", "push"); err != nil {
		t.Fatalf("an expired hold still refuses: %v", err)
	}
}

// TestStartHoldsItsName: the start gate resolves a container name and the
// daemon resolves it again; a rename of that name (either way) in
// between is refused until the start's response.
func TestStartHoldsItsName(t *testing.T) {
	var scans atomic.Int32
	p, _ := newPlugin(t, scoring.Default(), images(), fakeDB{}, &scans)
	steps := []struct {
		phase, r string
		allow    bool
	}{
		{"req", "POST /containers/oldok/rename?name=x", true},
		{"req", "POST /containers/oldok/start", true},
		{"req", "POST /containers/oldok/rename?name=x", false},
		{"req", "POST /containers/oldvuln/rename?name=oldok", false},
		{"req", "POST /containers/other/rename?name=y", true},
		{"res", "POST /containers/oldok/start", true},
		{"req", "POST /containers/oldvuln/rename?name=oldok", true},
		// A start through a link alias holds the name the alias hangs on:
		// renaming another container to "web" would redirect the alias.
		{"req", "POST /containers/web/okalias/start", true},
		{"req", "POST /containers/other/rename?name=web", false},
		{"req", "POST /containers/web/rename?name=x", false},
		{"req", "POST /containers/we/rename?name=x", true},
		{"res", "POST /containers/web/okalias/start", true},
		{"req", "POST /containers/other/rename?name=web", true},
		// A denied start holds nothing.
		{"req", "POST /containers/oldvuln/start", false},
		{"req", "POST /containers/oldvuln/rename?name=z", true},
	}
	for i, s := range steps {
		method, uri, _ := strings.Cut(s.r, " ")
		var allowed bool
		var msg string
		if s.phase == "req" {
			res := p.AuthZReq(req(method, uri, ""))
			allowed, msg = res.Allow, res.Msg
		} else {
			res := p.AuthZRes(req(method, uri, ""))
			allowed, msg = res.Allow, res.Msg
		}
		if allowed != s.allow {
			t.Fatalf("step %d %s %s: allow %v, want %v (%s)", i, s.phase, s.r, allowed, s.allow, msg)
		}
	}
}
