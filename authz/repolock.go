package authz

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
)

// anyRepo stands for every repository: a change whose repositories the
// plugin cannot know (docker load reads them from a tar it never sees; an
// image deleted by ID loses every tag).
const anyRepo = "*"

// repoLocks keeps a push and a change of the same repository's tags from
// overlapping. The push gate judges the images the repository's tags
// name, and the daemon resolves those tags again when it pushes: a tag
// moved in between (docker tag, rmi, load, import, commit, build -t, a
// pull) would ship an image no gate judged. So from a push's request to
// its response, changes that touch its repository are refused, and a push
// is refused while such a change is under way.
//
// The daemon calls a plugin's response phase only for requests whose
// handler succeeded, so a hold also ends after its time to live: a
// failed tag leaves none behind for long.
type repoLocks struct {
	mu      sync.Mutex
	now     func() time.Time
	pushes  map[string][]hold
	changes map[string][]hold
	// pulls are the gated pulls under way, whose response phase decides
	// what they brought: the daemon's pull event for them is left alone.
	pulls map[string][]hold
	// runs are the container names a start or exec is being decided for:
	// the gate resolves the name, and the daemon resolves it again, so a
	// rename in between must wait.
	runs map[string][]hold
}

type hold struct {
	what  string
	until time.Time
}

func newRepoLocks() *repoLocks {
	return &repoLocks{now: time.Now, pushes: map[string][]hold{}, changes: map[string][]hold{}, pulls: map[string][]hold{}, runs: map[string][]hold{}}
}

// How long a hold may last without its response: a push or a streamed
// change (pull, load, build) until its stream ends, a quick change a
// moment.
const (
	streamTTL = 30 * time.Minute
	quickTTL  = 30 * time.Second
)

// repoOf is the repository a reference names, in its full form
// (docker.io/library/app), or anyRepo when it names none.
func repoOf(ref string) string {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return anyRepo
	}
	return n.Name()
}

// live drops the expired holds of repo in m and reports what remains.
func (l *repoLocks) live(m map[string][]hold, repo string) []hold {
	now := l.now()
	hs := m[repo][:0]
	for _, h := range m[repo] {
		if now.Before(h.until) {
			hs = append(hs, h)
		}
	}
	if len(hs) == 0 {
		delete(m, repo)
		return nil
	}
	m[repo] = hs
	return hs
}

// conflict names a live hold in m on repo, or on any repository.
func (l *repoLocks) conflict(m map[string][]hold, repo string) (hold, bool) {
	for _, r := range []string{repo, anyRepo} {
		if hs := l.live(m, r); len(hs) > 0 {
			return hs[0], true
		}
	}
	if repo == anyRepo {
		for r := range m {
			if hs := l.live(m, r); len(hs) > 0 {
				return hs[0], true
			}
		}
	}
	return hold{}, false
}

// beginPush holds repo for a push, or says which change is under way.
func (l *repoLocks) beginPush(repo, what string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.conflict(l.changes, repo); ok {
		return fmt.Errorf("a change of %s's tags (%s) is under way; retry when it is done", repo, h.what)
	}
	l.pushes[repo] = append(l.pushes[repo], hold{what: what, until: l.now().Add(streamTTL)})
	return nil
}

// beginChange holds repos for a change of their tags, or says which push
// is under way.
func (l *repoLocks) beginChange(repos []string, what string, ttl time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range repos {
		if h, ok := l.conflict(l.pushes, r); ok {
			return fmt.Errorf("a push (%s) of %s is under way; its tags cannot change until it is done", h.what, strings.TrimSuffix(r, anyRepo))
		}
	}
	until := l.now().Add(ttl)
	for _, r := range repos {
		l.changes[r] = append(l.changes[r], hold{what: what, until: until})
	}
	return nil
}

// beginPull notes a gated pull of repo until its response.
func (l *repoLocks) beginPull(repo, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pulls[repo] = append(l.pulls[repo], hold{what: what, until: l.now().Add(streamTTL)})
}

func (l *repoLocks) endPull(repo string) { l.end(l.pulls, []string{repo}) }

// pulling reports a gated pull of repo under way.
func (l *repoLocks) pulling(repo string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.live(l.pulls, repo)) > 0
}

// containerName is a container name as the daemon keys it.
func containerName(n string) string { return strings.TrimPrefix(n, "/") }

// beginRun holds a container name while its start or exec is decided and
// done.
func (l *repoLocks) beginRun(name, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := containerName(name)
	l.runs[n] = append(l.runs[n], hold{what: what, until: l.now().Add(quickTTL)})
}

func (l *repoLocks) endRun(name string) { l.end(l.runs, []string{containerName(name)}) }

// running names a start or exec under way that a rename of any of names
// could redirect: one of that name, or of a link alias below it
// ("web/db" resolves through the container named "web").
func (l *repoLocks) running(names ...string) (hold, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for held := range l.runs {
		hs := l.live(l.runs, held)
		if len(hs) == 0 {
			continue
		}
		for _, n := range names {
			if n = containerName(n); n != "" && (held == n || strings.HasPrefix(held, n+"/")) {
				return hs[0], true
			}
		}
	}
	return hold{}, false
}

// endPush and endChange release the oldest hold of each repository.
func (l *repoLocks) endPush(repo string) { l.end(l.pushes, []string{repo}) }

func (l *repoLocks) endChange(repos []string) { l.end(l.changes, repos) }

func (l *repoLocks) end(m map[string][]hold, repos []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range repos {
		if hs := m[r]; len(hs) > 1 {
			m[r] = hs[1:]
		} else {
			delete(m, r)
		}
	}
}

// tagChanges names the repositories whose tags a request may add or move,
// and how long its hold may last. Removals are left out: an untag cannot
// point a name at another image, and the push of a removed tag fails. So
// are pulls: a pull of registry/app:1 points the local tag at what
// registry/app:1 already holds, and pushing that back ships nothing new;
// a failed pull, which the daemon never answers in the response phase,
// would otherwise hold the repository for a stream's time to live.
func tagChanges(c *Call) (repos []string, ttl time.Duration) {
	one := func(ref string, ttl time.Duration) ([]string, time.Duration) {
		if strings.TrimSpace(ref) == "" {
			return nil, 0 // nothing tagged
		}
		return []string{repoOf(ref)}, ttl
	}
	switch c.Action {
	case ActTag:
		return one(c.Query.Get("repo"), quickTTL)
	case ActCommit:
		return one(c.Query.Get("repo"), quickTTL)
	case ActImport:
		return one(c.Query.Get("repo"), streamTTL)
	case ActLoad:
		// The tags are in a tar the plugin never sees.
		return []string{anyRepo}, streamTTL
	case ActBuild:
		for _, t := range c.Query["t"] {
			if strings.TrimSpace(t) != "" {
				repos = append(repos, repoOf(t))
			}
		}
		return repos, streamTTL
	}
	return nil, 0
}
