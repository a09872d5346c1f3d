package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/go-plugins-helpers/authorization"
	"github.com/sirupsen/logrus"

	"github.com/divds/divds/audit"
	"github.com/divds/divds/internal/guard"
	"github.com/divds/divds/scoring"
)

// ErrNotFound is what a Daemon returns for an image it does not have.
var ErrNotFound = errors.New("no such image")

// ImageInfo is what the gates need of a local image.
type ImageInfo struct {
	ID       string
	RepoTags []string
	// RepoDigests name the repositories the image was pulled from (or
	// pushed to): only they make its names count for scoped policy
	// entries.
	RepoDigests []string
	// Platforms lists, on the containerd image store, the platforms
	// (os/arch[/variant]) whose images the index ID holds locally; empty
	// for an image of one platform.
	Platforms []string
}

// Daemon is what the gates need of the Docker daemon. The plugin may
// call back into the daemon from a handler: those calls go through the
// plugin too, as "other" actions, and are allowed at once.
type Daemon interface {
	Inspect(ctx context.Context, ref string) (ImageInfo, error)
	// Repo lists the local images tagged in a repository.
	Repo(ctx context.Context, repo string) ([]ImageInfo, error)
	// Untag removes one reference (forcing, as a pull's result must go);
	// the image is deleted when nothing else holds it.
	Untag(ctx context.Context, ref string) error
	// Container resolves a container name, ID, ID prefix or link alias
	// as the daemon does, with the image it runs (ErrNotFound when none).
	Container(ctx context.Context, name string) (Container, error)
	// PluginName returns the name of the managed plugin a name, ID or ID
	// prefix refers to (ErrNotFound when none).
	PluginName(ctx context.Context, ref string) (string, error)
	// RunningContainers lists the running containers, or those of them
	// with the given IDs.
	RunningContainers(ctx context.Context, ids ...string) ([]Container, error)
	// StopContainer stops a container as docker stop does, and keeps its
	// restart policy from starting it again.
	StopContainer(ctx context.Context, id string) error
	// RemoveContainer removes a container by force, as docker rm -f does.
	RemoveContainer(ctx context.Context, id string) error
	// RemovePlatforms removes the images of some platforms from an image
	// of several (the containerd store), keeping its names and the others.
	RemovePlatforms(ctx context.Context, id string, platforms []string) error
	// PreviousServiceImage returns the image of a swarm service's
	// previous spec, which a rollback restores (ErrNotFound when the
	// service or its previous spec does not exist).
	PreviousServiceImage(ctx context.Context, service string) (string, error)
}

// Database reports the state of the vulnerability database.
type Database interface {
	// Revision is the current revision, or an error naming the cause and
	// fix when there is no usable database (missing, or older than the
	// policy's db.max_age).
	Revision(pol *scoring.Policy) (uint64, error)
}

// Options wire a Plugin.
type Options struct {
	Daemon   Daemon
	Verdicts *Verdicts
	Database Database
	Auditor  audit.Auditor
	Metrics  *Metrics
	Log      logrus.FieldLogger
	// PolicyPath is named in deny messages, where findings are approved.
	PolicyPath string
	// PluginName is this plugin's name as the daemon knows it, for
	// self-protection (its own disable, remove, set and upgrade).
	PluginName string
	// Timeout bounds one decision (scans included); default 2 minutes.
	Timeout time.Duration
	// RemoteScan scans an image in its registry, for pull_scan: before.
	// Nil makes such pulls follow on_error.
	RemoteScan RemoteScanFunc
}

// Plugin implements authorization.Plugin.
type Plugin struct {
	opts   Options
	policy atomic.Pointer[loaded]
	seq    atomic.Uint64

	// locks keep pushes and tag changes of one repository apart.
	locks *repoLocks

	// flagged holds the running containers the reviews found failing
	// and left running (for divds_running_denied_containers).
	flaggedMu sync.Mutex
	flagged   map[string]Flagged
}

// loaded is a policy in force with its digest, computed once at load:
// every gated decision needs it, and computing it is the dearest part of
// a decision answered from the cache.
type loaded struct {
	pol    *scoring.Policy
	digest string
}

var _ authorization.Plugin = (*Plugin)(nil)

// New returns a plugin enforcing pol.
func New(pol *scoring.Policy, opts Options) *Plugin {
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.Log == nil {
		opts.Log = logrus.New()
	}
	if opts.Auditor == nil {
		opts.Auditor = audit.Multi{}
	}
	p := &Plugin{opts: opts, locks: newRepoLocks()}
	p.SetPolicy(pol)
	return p
}

// SetPolicy swaps the policy in force; requests in flight finish under
// the one they started with. The policy must not change afterwards.
func (p *Plugin) SetPolicy(pol *scoring.Policy) {
	p.policy.Store(&loaded{pol: pol, digest: pol.Digest()})
}

// Policy returns the policy in force.
func (p *Plugin) Policy() *scoring.Policy { return p.policy.Load().pol }

// PolicyDigest returns the digest of the policy in force.
func (p *Plugin) PolicyDigest() string { return p.policy.Load().digest }

// Current returns the policy in force and its digest, as one pair.
func (p *Plugin) Current() (*scoring.Policy, string) {
	cur := p.policy.Load()
	return cur.pol, cur.digest
}

// decision is one gate's answer with what the audit record needs.
type decision struct {
	allow   bool
	msg     string
	image   string
	imageID string
	verdict *Verdict
	reason  string
	err     error
}

func allow() decision { return decision{allow: true} }

func (p *Plugin) respond(ctx context.Context, call *Call, phase string, start time.Time, d decision) authorization.Response {
	rec := p.record(ctx, call.Action, phase, start, d)
	p.opts.Auditor.Record(rec)
	if p.opts.Metrics != nil {
		p.opts.Metrics.decisions.WithLabelValues(string(call.Action), rec.Decision).Inc()
		if rec.Coverage != "" {
			p.opts.Metrics.coverage.WithLabelValues(rec.Coverage).Inc()
		}
	}
	if d.allow {
		return authorization.Response{Allow: true}
	}
	return authorization.Response{Allow: false, Msg: d.msg}
}

// record is the audit record of a decision.
func (p *Plugin) record(ctx context.Context, action Action, phase string, start time.Time, d decision) audit.Record {
	cur := p.policy.Load()
	pol := cur.pol
	rec := audit.Record{
		Time: start.UTC(), RequestID: requestID(ctx), Action: string(action), Image: d.image, ImageID: d.imageID,
		Decision: "allow", Reason: d.reason, Policy: cur.digest, Duration: float64(time.Since(start).Microseconds()) / 1000, Phase: phase,
		Mode: string(pol.Mode),
	}
	if !d.allow {
		rec.Decision = "deny"
	}
	if d.err != nil {
		rec.Error = d.err.Error()
	}
	if v := d.verdict; v != nil {
		rec.Verdict, rec.Score, rec.Threshold, rec.Exceeded = string(v.Verdict), v.Score.String(), v.Threshold.String(), v.Exceeded
		rec.Counts, rec.Approved, rec.Top, rec.Revision, rec.Sample = v.Counts.Unapproved, v.Approved, v.Top, v.Revision, v.Sample
		rec.Coverage = v.Coverage
		rec.Mode = string(v.Mode)
		if p.opts.Metrics != nil && v.Cached {
			p.opts.Metrics.cacheHits.Inc()
		}
	}
	return rec
}

type ctxKey struct{}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// gates maps each gated action to the policy switch that turns it on
// and to its gate.
var gates = map[Action]struct {
	on     scoring.Action
	decide func(*Plugin, context.Context, *Call, *scoring.Policy) decision
}{
	ActPush:   {scoring.ActionPush, (*Plugin).gatePush},
	ActPull:   {scoring.ActionPull, (*Plugin).gatePullBefore},
	ActCreate: {scoring.ActionRun, (*Plugin).gateCreate},
	ActStart:  {scoring.ActionRun, (*Plugin).gateStart},
	// A service runs containers: the run switch gates it.
	ActService: {scoring.ActionRun, (*Plugin).gateService},
	// A plugin install pulls an image.
	ActPluginInstall: {scoring.ActionPull, (*Plugin).gatePluginInstall},
	// An exec runs new processes of the container's image.
	ActExec: {scoring.ActionRun, (*Plugin).gateExec},
}

// refusals are actions refused outright unless a policy key allows them,
// whichever gates are on and in every mode: each brings in or runs an
// image that no gate can see. allowed reports the policy's switch; key
// names it in the deny message.
var refusals = map[Action]struct {
	key     string
	allowed func(*scoring.Policy) bool
	why     string
}{
	ActUnknown: {"", func(*scoring.Policy) bool { return false },
		"the route is unknown to divds, and its last segment names an action that can bring in, run or ship an image"},
	ActPluginCreate: {"allow_plugin_admin", func(p *scoring.Policy) bool { return p.AllowPluginAdmin },
		"a plugin created from a local rootfs (sent as a tar the plugin never sees) runs unscanned"},
	ActSwarmJoin: {"allow_swarm_join", func(p *scoring.Policy) bool { return p.AllowSwarmJoin },
		"a swarm node runs the tasks any manager of the swarm accepts, and a manager without divds accepts any image"},
	ActBuild: {"allow_build", func(p *scoring.Policy) bool { return p.AllowBuild },
		"this host must not build: a build's RUN steps execute base images no gate sees"},
}

// AuthZReq decides a request before the daemon acts on it: wherever
// possible the decision is made here, since a deny in the response phase
// cannot stop a streamed pull, push, load or build.
func (p *Plugin) AuthZReq(req authorization.Request) authorization.Response {
	// Every API call passes through here: reads, which no gate concerns,
	// are answered before any parsing. (An empty method is refused below.)
	if readOnly(req.RequestMethod) {
		return authorization.Response{Allow: true}
	}
	start := time.Now()
	call, err := Parse(req.RequestMethod, req.RequestURI, req.RequestHeaders, req.RequestBody)
	if err != nil {
		ctx, cancel := p.requestContext(start)
		defer cancel()
		// Never echo the URI of /auth: the path alone is safe, the rest
		// is not logged.
		c := &Call{Action: ActOther}
		return p.respond(ctx, c, "request", start, decision{msg: fmt.Sprintf("divds: request refused: %v", err), reason: "malformed", err: err})
	}
	pol := p.Policy()
	selfProtected := call.Action == ActPluginAdmin || call.Action == ActPluginInstall && call.Name != ""
	if call.Action == ActRename {
		// A rename never needs a verdict: it only waits for the starts
		// and execs of its names.
		h, busy := p.locks.running(call.Name, call.Query.Get("name"))
		if !busy {
			return authorization.Response{Allow: true}
		}
		ctx, cancel := p.requestContext(start)
		defer cancel()
		return p.respond(ctx, call, "request", start, decision{image: call.Name, reason: "start in progress",
			msg: fmt.Sprintf("divds: rename of %s refused: %s of that name is being decided; retry when it is done", call.Name, h.what)})
	}
	refusal, refusable := refusals[call.Action]
	g, gated := gates[call.Action]
	gated = gated && pol.Gated(g.on)
	var changes []string
	var ttl time.Duration
	if pol.Gated(scoring.ActionPush) {
		changes, ttl = tagChanges(call)
	}
	if !selfProtected && !gated && !refusable && len(changes) == 0 {
		// Attach, auth, ping and the rest are not about images, and load,
		// import, commit and tag bring images that the run gate checks
		// before anything runs. None is audited, and /auth's body (which
		// holds a password) is never read or logged.
		return authorization.Response{Allow: true}
	}
	ctx, cancel := p.requestContext(start)
	defer cancel()
	switch {
	case refusable:
		if d := p.refuse(call, pol, refusal.key, refusal.allowed(pol), refusal.why); !d.allow {
			return p.respond(ctx, call, "request", start, d)
		}
	case selfProtected:
		// Self-protection comes first, whichever gates are on: disabling,
		// removing, reconfiguring or upgrading divds itself.
		if d := p.gatePluginAdmin(ctx, call, pol); !d.allow {
			return p.respond(ctx, call, "request", start, d)
		}
	}
	if len(changes) > 0 {
		if err := p.locks.beginChange(changes, call.Method+" "+call.Path, ttl); err != nil {
			return p.respond(ctx, call, "request", start, decision{image: strings.Join(changes, ","), reason: "push in progress",
				msg: fmt.Sprintf("divds: %s %s refused: %v", call.Method, call.Path, err)})
		}
	}
	d := allow()
	if gated {
		d = g.decide(p, ctx, call, pol)
	}
	if !d.allow && len(changes) > 0 {
		p.locks.endChange(changes) // the daemon will not act on it
	}
	if gated && d.allow && call.Action == ActPull {
		p.locks.beginPull(repoOf(call.PullRef()), call.PullRef())
	}
	if !gated && d.allow {
		return authorization.Response{Allow: true}
	}
	return p.respond(ctx, call, "request", start, d)
}

// refuse answers an action of the refusals table: allowed when the
// policy's key allows it, refused otherwise, audited either way.
func (p *Plugin) refuse(call *Call, pol *scoring.Policy, key string, allowed bool, why string) decision {
	d := decision{allow: allowed, image: call.Name, reason: "policy: " + string(call.Action)}
	if allowed {
		return d
	}
	d.msg = fmt.Sprintf("divds: %s %s refused: %s", call.Method, call.Path, why)
	if key != "" {
		d.msg += fmt.Sprintf("; set %s: true in %s and reload to allow it", key, p.opts.PolicyPath)
	}
	return d
}

// requestContext bounds a decision's calls into the daemon and scans, and
// carries the request ID of its audit record. Only requests a gate
// decides pay for it.
func (p *Plugin) requestContext(start time.Time) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.Timeout)
	return context.WithValue(ctx, ctxKey{}, fmt.Sprintf("%x-%d", start.UnixNano(), p.seq.Add(1))), cancel
}

// gatePluginInstall decides a plugin install or upgrade. A plugin's
// rootfs is an image that runs with the privileges the user grants it:
// it is scanned in its registry, before the daemon pulls it.
func (p *Plugin) gatePluginInstall(ctx context.Context, call *Call, pol *scoring.Policy) decision {
	return p.remoteVerdict(ctx, "plugin install", "before the pull", call.Image, "", pol)
}

// AuthZRes sees the daemon's answer. A pull's image is scanned, and
// removed if it fails. A container create is decided again by what the
// daemon created: the image ID the new container runs.
func (p *Plugin) AuthZRes(req authorization.Request) authorization.Response {
	if !strings.EqualFold(req.RequestMethod, "POST") {
		return authorization.Response{Allow: true}
	}
	start := time.Now()
	// The request phase refused what does not parse; the body is not
	// needed here, so a create's JSON is not decoded a second time.
	call, err := parseRoute(req.RequestMethod, req.RequestURI)
	if err != nil {
		return authorization.Response{Allow: true}
	}
	switch call.Action {
	case ActPush:
		p.locks.endPush(repoOf(call.PushRef()))
		return authorization.Response{Allow: true}
	case ActStart, ActExec:
		p.locks.endRun(call.Name)
		return authorization.Response{Allow: true}
	}
	if call.Action == ActPull || call.Action == ActImport {
		// Parse refused a pull it cannot read before any hold was taken.
		if call.imageCreate() != nil {
			return authorization.Response{Allow: true}
		}
	}
	if changes, _ := tagChanges(call); len(changes) > 0 {
		p.locks.endChange(changes)
	}
	var decide func(context.Context, *Call, *scoring.Policy) decision
	switch call.Action {
	case ActCreate:
		// Only a create that happened names a container.
		if req.ResponseStatusCode != http.StatusCreated {
			return authorization.Response{Allow: true}
		}
		decide = func(ctx context.Context, call *Call, pol *scoring.Policy) decision {
			return p.verifyCreate(ctx, call, req.ResponseBody, pol)
		}
	case ActPull:
		// A streamed pull reaches here with status 0 (the daemon resets
		// the recorded status when it flushes), whether it succeeded or
		// not: what arrived is checked either way. A status of 300 or
		// more is a failed pull, which brought nothing.
		repo := repoOf(call.PullRef())
		if req.ResponseStatusCode >= 300 {
			p.locks.endPull(repo)
			return authorization.Response{Allow: true}
		}
		decide = func(ctx context.Context, call *Call, pol *scoring.Policy) decision {
			// The hold lasts through the check, so that the daemon's pull
			// event leaves this pull to it.
			defer p.locks.endPull(repo)
			return p.gatePullAfter(ctx, call, pol)
		}
	default:
		return authorization.Response{Allow: true}
	}
	g := gates[call.Action]
	pol := p.Policy()
	if !pol.Gated(g.on) {
		return authorization.Response{Allow: true}
	}
	ctx, cancel := p.requestContext(start)
	defer cancel()
	d := decide(ctx, call, pol)
	if call.Action == ActCreate && d.allow {
		// The request phase audited this create already; a verification
		// that confirms it adds no record.
		return authorization.Response{Allow: true}
	}
	return p.respond(ctx, call, "response", start, d)
}

// DecidesPulls reports whether pull events are decided (the pull gate is
// on); otherwise the caller just scans what arrived.
func (p *Plugin) DecidesPulls() bool { return p.Policy().Gated(scoring.ActionPull) }

// PulledByEvent decides an image the daemon reports pulled, as the pull
// gate's response phase does: a classic build's base image, which never
// passes /images/create, a pull that ended while the plugin was down (the
// events are replayed at its start), or any pull the gate did not see. A
// failing image loses its names and is quarantined; only such removals
// are audited. It may wait: while a gated pull of the repository is under
// way, its response phase decides first (and audits), and the event then
// finds nothing left to do. A response that never comes (the daemon skips
// it when the pull failed early) holds the event at most pullEventWait.
// Callers run it on a goroutine of its own.
func (p *Plugin) PulledByEvent(ctx context.Context, ref string) {
	repo := repoOf(ref)
	for deadline := time.Now().Add(pullEventWait); p.locks.pulling(repo) && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	if p.opts.Metrics != nil {
		defer p.opts.Metrics.pullEvents.Inc()
	}
	pol := p.Policy()
	if !pol.Gated(scoring.ActionPull) {
		return
	}
	start := time.Now()
	call := &Call{Action: ActPull, Method: "EVENT", Path: "pull", Query: url.Values{"fromImage": {ref}}}
	rctx, cancel := p.requestContext(start)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel) // the plugin is shutting down
	defer stop()
	if d := p.gatePullAfter(rctx, call, pol); !d.allow {
		p.respond(rctx, call, "event", start, d)
	}
}

// pullEventWait bounds how long a pull event waits for a gated pull's
// response phase.
const pullEventWait = 2 * time.Minute

// verifyCreate decides a container create again by what the daemon
// created. Between the request's check of a name and the daemon's create,
// the name can be moved to another image, or an image absent at the
// check can arrive: the response names the container, and the daemon
// says which image ID it runs. A container that fails is removed; the
// client gets the deny instead of its ID.
func (p *Plugin) verifyCreate(ctx context.Context, call *Call, body []byte, pol *scoring.Policy) decision {
	var created struct {
		ID string `json:"Id"`
	}
	if err := json.Unmarshal(body, &created); err != nil || created.ID == "" {
		// Which container was made cannot be told: the start gate, which
		// decides by the container's image ID, still stands before it.
		return decision{image: call.Image, reason: "create response unreadable", err: err,
			msg: "run denied: divds could not read which container the daemon created; it will not start unless its image passes"}
	}
	c, err := p.opts.Daemon.Container(ctx, created.ID)
	var d decision
	if err != nil {
		d = p.daemonError(ctx, "run", call.Image, pol, err)
	} else {
		// The platform the daemon chose is the one that runs.
		d = p.judgeImage(ctx, "run", containerRef(c), p.imageOf(ctx, c.ImageID), c.Platform, acted, pol)
	}
	if d.allow {
		return d
	}
	d.reason = "removed after create"
	if err := p.opts.Daemon.RemoveContainer(ctx, created.ID); err != nil && !errors.Is(err, ErrNotFound) {
		d.reason = "denied after create; removal failed: " + err.Error()
		return d
	}
	d.msg += ". The container was removed"
	return d
}

// digestOf returns pol's digest, from the load when pol is the policy in
// force (a request keeps the policy it started with across a reload).
func (p *Plugin) digestOf(pol *scoring.Policy) string {
	if cur := p.policy.Load(); cur.pol == pol {
		return cur.digest
	}
	return pol.Digest()
}

// readOnly reports the methods no route gates (GET, HEAD, OPTIONS).
func readOnly(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "get", "head", "options":
		return true
	}
	return false
}

// judgeImage decides the platforms of img that a request naming the
// platform requested brings into play in scope sc (platformsToJudge): the
// first that fails decides, else the last that passes.
func (p *Plugin) judgeImage(ctx context.Context, action, ref string, img ImageInfo, requested string, sc scope, pol *scoring.Policy) decision {
	plats := platformsToJudge(img, requested, sc)
	if len(plats) == 0 {
		// The daemon lacks that platform: it answers "not found", and
		// what it then pulls passes the pull gate.
		return decision{allow: true, image: withPlatform(ref, requested), imageID: img.ID, reason: "platform not present"}
	}
	var d decision
	for _, pl := range plats {
		if d = p.verdictFor(ctx, action, ref, img, pl, pol); !d.allow {
			return d
		}
	}
	return d
}

// verdictFor scans (or recalls) one platform of an image ("" for an image
// of one platform) and turns errors into the policy's on_error answer.
func (p *Plugin) verdictFor(ctx context.Context, action, ref string, img ImageInfo, platform string, pol *scoring.Policy) decision {
	id := img.ID
	shown := withPlatform(ref, platform)
	d := decision{image: shown, imageID: id}
	rev, err := p.opts.Database.Revision(pol)
	if err == nil {
		var v *Verdict
		v, err = p.opts.Verdicts.Get(ctx, ImageKey(id, platform), rev, pol, p.digestOf(pol), trustedRefs(ref, img))
		if err == nil {
			d.verdict = v
			d.allow = v.Verdict != scoring.Deny
			if !d.allow {
				d.reason = "score"
				d.msg = fmt.Sprintf("%s of %s denied: %s. Approve findings in %s; details: divds-authz scan %s",
					action, shown, v.Summary, p.opts.PolicyPath, ref)
			}
			return d
		}
	}
	d.err = err
	d.reason = "error"
	p.logPanic(err)
	if pol.OnError == scoring.OnErrorAllow {
		d.allow = true
		p.opts.Log.WithError(err).Warnf("%s of %s allowed without a verdict (on_error: allow)", action, shown)
		return d
	}
	d.msg = fmt.Sprintf("%s of %s denied: no verdict could be computed: %v. Fix the cause, or set on_error: allow in %s", action, shown, err, p.opts.PolicyPath)
	return d
}

// trustedRefs are the references a local image's verdict is evaluated
// with: the name the request used, and the repository digests the daemon
// reports for the image (which vouch for the names of their
// repositories). A digest reference written by the client counts only
// as the daemon records it (dockerd 20.10 resolves one only when it holds
// that repository digest, then reported in RepoDigests): the gate does
// not rest on how each engine and image store resolves such a reference.
func trustedRefs(ref string, img ImageInfo) []string {
	refs := slices.Clone(img.RepoDigests)
	if !strings.Contains(ref, "@") {
		refs = append(refs, ref)
	}
	return refs
}

// imageOf is the image a container runs, with its repository digests as
// the daemon reports them now (they vouch for scoped policy entries, as
// at create); only the ID when the image cannot be inspected.
func (p *Plugin) imageOf(ctx context.Context, id string) ImageInfo {
	if info, err := p.opts.Daemon.Inspect(ctx, id); err == nil && info.ID == id {
		return info
	}
	return ImageInfo{ID: id}
}

// gatePush decides a push from the images its tags name now, and holds
// the repository until the push's response: its tags cannot move between
// this check and the daemon's push (see repoLocks).
func (p *Plugin) gatePush(ctx context.Context, call *Call, pol *scoring.Policy) decision {
	ref := call.PushRef()
	repo := repoOf(ref)
	if err := p.locks.beginPush(repo, "push of "+ref); err != nil {
		return decision{image: ref, reason: "tag change in progress", msg: fmt.Sprintf("push of %s refused: %v", ref, err)}
	}
	d := p.judgePush(ctx, ref, call.Platform, pol)
	if !d.allow || d.reason == "no such image" {
		// The daemon will push nothing, and may not call the response
		// phase: hold nothing.
		p.locks.endPush(repo)
	}
	return d
}

// judgePush decides the images a push ships: of an image of several
// platforms, the one named, else every one present (a push of the whole
// index ships them all).
func (p *Plugin) judgePush(ctx context.Context, ref, platform string, pol *scoring.Policy) decision {
	var images []ImageInfo
	if strings.ContainsAny(refTail(ref), ":@") {
		info, err := p.opts.Daemon.Inspect(ctx, ref)
		switch {
		case errors.Is(err, ErrNotFound):
			return decision{allow: true, image: ref, reason: "no such image"} // the daemon will say so
		case err != nil:
			return p.daemonError(ctx, "push", ref, pol, err)
		}
		images = []ImageInfo{info}
	} else {
		// No tag: the daemon pushes every tag of the repository.
		infos, err := p.opts.Daemon.Repo(ctx, ref)
		if err != nil {
			return p.daemonError(ctx, "push", ref, pol, err)
		}
		images = infos
	}
	var last decision = allow()
	for _, img := range images {
		d := p.judgeImage(ctx, "push", displayRef(ref, img), img, platform, every, pol)
		if !d.allow {
			return d
		}
		last = d
	}
	return last
}

// logPanic writes the stack of a scan that panicked inside claircore to
// the plugin's log: the verdict's message stays one line, and the stack is
// what a bug report needs.
func (p *Plugin) logPanic(err error) {
	var pe *guard.PanicError
	if errors.As(err, &pe) {
		p.opts.Log.WithError(err).Errorf("scan panicked; stack:\n%s", pe.Stack)
	}
}

func (p *Plugin) daemonError(ctx context.Context, action, ref string, pol *scoring.Policy, err error) decision {
	d := decision{image: ref, err: err, reason: "error"}
	if pol.OnError == scoring.OnErrorAllow {
		d.allow = true
		return d
	}
	d.msg = fmt.Sprintf("%s of %s denied: the Docker daemon could not be asked about the image: %v. Check the plugin's --docker-host, or set on_error: allow in %s", action, ref, err, p.opts.PolicyPath)
	return d
}

func displayRef(ref string, img ImageInfo) string {
	if strings.ContainsAny(refTail(ref), ":@") || len(img.RepoTags) == 0 {
		return ref
	}
	for _, t := range img.RepoTags {
		if strings.HasPrefix(t, ref+":") {
			return t
		}
	}
	return ref
}

// gatePullBefore denies a pull that is known to fail: its reference was
// quarantined after an earlier pull, or the image it names locally is
// denied. Anything else is decided after the pull.
func (p *Plugin) gatePullBefore(ctx context.Context, call *Call, pol *scoring.Policy) decision {
	ref := call.PullRef()
	norm := normalize(ref)
	wanted := call.Platform
	if wanted == "" {
		wanted = hostPlatform()
	}
	if q, ok := p.opts.Verdicts.QuarantinedRef(norm, wanted); ok {
		d := p.recheckQuarantine(ctx, "pull", ref, q, pol)
		if !d.allow {
			return d
		}
	}
	if pol.PullScan == scoring.PullScanBefore {
		// A pull for another platform (docker pull --platform) brings
		// that platform's image: that one is scanned.
		return p.remoteVerdict(ctx, "pull", "before the pull", ref, call.Platform, pol)
	}
	info, err := p.opts.Daemon.Inspect(ctx, ref)
	if err != nil {
		return decision{allow: true, image: ref, reason: "decided after the pull"}
	}
	return p.judgeImage(ctx, "pull", ref, info, call.Platform, named, pol)
}

// remoteVerdict scans the image in its registry before the daemon
// fetches it: a pull under pull_scan: before, a swarm service, whose
// nodes pull by themselves, or a plugin's rootfs. when says, in a deny,
// what the deny comes before.
func (p *Plugin) remoteVerdict(ctx context.Context, action, when, ref, platform string, pol *scoring.Policy) decision {
	d := decision{image: ref}
	rev, err := p.opts.Database.Revision(pol)
	if err == nil && p.opts.RemoteScan == nil {
		err = errors.New("registry scanning is needed, and this plugin was started without it")
	}
	if err == nil {
		var v *Verdict
		if v, err = p.opts.Verdicts.GetRemote(ctx, ref, platform, rev, pol, p.digestOf(pol), p.opts.RemoteScan); err == nil {
			d.verdict, d.imageID, d.reason = v, v.ImageID, "scanned in the registry"
			d.allow = v.Verdict != scoring.Deny
			if !d.allow {
				d.reason = "score"
				d.msg = fmt.Sprintf("%s of %s denied %s (scanned in its registry): %s. Approve findings in %s; details: divds-authz scan --remote %s",
					action, ref, when, v.Summary, p.opts.PolicyPath, ref)
			}
			return d
		}
	}
	d.err, d.reason = err, "error"
	p.logPanic(err)
	if pol.OnError == scoring.OnErrorAllow {
		d.allow = true
		return d
	}
	hint := "give the plugin registry credentials (serve --registry-auth)"
	if action == "pull" {
		hint += ", use pull_scan: after"
	}
	d.msg = fmt.Sprintf("%s of %s denied: the image could not be scanned in its registry: %v. Fix the cause: %s, or set on_error: allow in %s",
		action, ref, err, hint, p.opts.PolicyPath)
	return d
}

// gateService decides a swarm service's create or update. Its tasks are
// containers the daemon creates itself, never through /containers/create,
// from the image each node pulls from the registry, or from the node's
// own copy when that pull fails. The image must be pinned by digest: a
// tag is resolved again by every node at every task start. A pinned
// image is the same everywhere: the local one decides when this daemon
// has it, else the registry's; with neither readable, on_error does.
func (p *Plugin) gateService(ctx context.Context, call *Call, pol *scoring.Policy) decision {
	ref := call.Image
	if call.Rollback {
		what := "rollback of service " + call.Name
		img, err := p.opts.Daemon.PreviousServiceImage(ctx, call.Name)
		switch {
		case errors.Is(err, ErrNotFound):
			// The daemon refuses the rollback itself.
			return decision{allow: true, image: what, reason: "no previous spec"}
		case err != nil:
			return p.daemonError(ctx, "service", what, pol, err)
		}
		ref = img
	}
	if !pinned(ref) {
		// Each node resolves a tag itself, whenever it (re)starts a task:
		// a tag moved after this check would run an image no gate judged.
		return decision{image: ref, reason: "not pinned",
			msg: fmt.Sprintf("service of %s denied: the image is not pinned by digest, so the nodes could run another image than the one judged. Pin it (name@sha256:…); docker service create and update pin tags themselves unless --no-resolve-image is given", ref)}
	}
	info, err := p.opts.Daemon.Inspect(ctx, ref)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return p.daemonError(ctx, "service", ref, pol, err)
	}
	if err == nil {
		// A local image found by the digest is the registry's image.
		return p.judgeImage(ctx, "service", ref, info, "", named, pol)
	}
	return p.remoteVerdict(ctx, "service", "before its tasks run", ref, "", pol)
}

// pinned reports whether ref names a digest: the registry's image and a
// local one found by that reference are then the same.
func pinned(ref string) bool {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return false
	}
	_, ok := n.(reference.Canonical)
	return ok
}

// recheckQuarantine keeps a quarantine while the image still fails
// under the current policy and database; an admin who approves its
// findings lifts it with a policy reload.
func (p *Plugin) recheckQuarantine(ctx context.Context, action, ref string, q *Quarantined, pol *scoring.Policy) decision {
	d := p.verdictFor(ctx, action, ref, ImageInfo{ID: q.ImageID}, q.Platform, pol)
	if d.allow && d.err == nil {
		p.opts.Verdicts.Release(ImageKey(q.ImageID, q.Platform))
		return d
	}
	if d.err != nil && pol.OnError == scoring.OnErrorAllow {
		return d
	}
	if d.verdict == nil {
		d.msg = fmt.Sprintf("%s of %s denied: the image was quarantined after a pull (%s) and cannot be re-evaluated now: %v", action, ref, q.Summary, d.err)
	}
	d.allow = false
	d.reason = "quarantined"
	return d
}

// gatePullAfter scans what a pull brought. A failing image loses the
// references the pull gave it (so it is gone when nothing else holds
// it), is quarantined, and the pull is answered with a deny. The docker
// CLI still reports success for a streamed pull; the run gate is what
// keeps the image from running.
func (p *Plugin) gatePullAfter(ctx context.Context, call *Call, pol *scoring.Policy) decision {
	ref := call.PullRef()
	var images []ImageInfo
	allTags := call.Query.Get("tag") == "" && !strings.ContainsAny(refTail(ref), ":@")
	if allTags {
		// A pull of a bare repository name: every tag it brought, each
		// image once.
		infos, err := p.opts.Daemon.Repo(ctx, ref)
		if err != nil {
			return p.daemonError(ctx, "pull", ref, pol, err)
		}
		seen := map[string]bool{}
		for _, info := range infos {
			if !seen[info.ID] {
				seen[info.ID] = true
				images = append(images, info)
			}
		}
	} else {
		info, err := p.opts.Daemon.Inspect(ctx, ref)
		if errors.Is(err, ErrNotFound) {
			return decision{allow: true, image: ref, reason: "nothing was pulled"}
		}
		if err != nil {
			return p.daemonError(ctx, "pull", ref, pol, err)
		}
		images = []ImageInfo{info}
	}
	requested := call.Platform
	if requested == "" {
		requested = hostPlatform()
	}
	// A pull of one platform brought that one, which is judged even if the
	// inspect does not list it; a pull of the whole tag (or one seen only
	// as an event) may have brought several.
	sc := every
	if call.Platform != "" {
		sc = acted
	}
	result := allow()
	for _, img := range images {
		shown := displayRef(ref, img)
		plats := platformsToJudge(img, call.Platform, sc)
		var failed []string
		var d decision
		for _, pl := range plats {
			pd := p.verdictFor(ctx, "pull", shown, img, pl, pol)
			if pd.allow {
				if result.verdict == nil {
					result = pd
				}
				continue
			}
			failed, d = append(failed, pl), pd
		}
		if len(failed) == 0 {
			continue
		}
		if failed[0] != "" && len(failed) < len(img.Platforms) {
			// Other platforms of the index stay: only the failing ones'
			// images go, under the same names.
			result = p.removePlatforms(ctx, img, failed, shown, d)
			continue
		}
		result = p.removePulled(ctx, img, shown, ref, allTags, failed, requested, d)
	}
	return result
}

// removePlatforms removes the failing platforms of an image of several
// and quarantines each.
func (p *Plugin) removePlatforms(ctx context.Context, img ImageInfo, failed []string, shown string, d decision) decision {
	p.quarantine(img.ID, failed, "", []string{normalize(shown)}, d)
	d.reason = "platforms removed after pull"
	if err := p.opts.Daemon.RemovePlatforms(ctx, img.ID, failed); err != nil && !errors.Is(err, ErrNotFound) {
		d.reason = "quarantined; removal failed: " + err.Error()
	}
	d.msg += fmt.Sprintf(". The pulled image of %s was removed and quarantined; the other platforms stay", strings.Join(failed, ", "))
	return d
}

// removePulled takes every name off a failing pulled image, so that it is
// gone when nothing else holds it, and quarantines it.
func (p *Plugin) removePulled(ctx context.Context, img ImageInfo, shown, ref string, allTags bool, failed []string, requested string, d decision) decision {
	refs := []string{shown}
	if allTags {
		// Every tag of the repository that names this image.
		refs = reposTags(img, ref)
	}
	// Every other name of the image goes too: a tag added while the
	// pull ran (docker tag of the pulled name into another repository)
	// would keep the image, and its ID, alive.
	if now, err := p.opts.Daemon.Inspect(ctx, img.ID); err == nil {
		for _, r := range append(now.RepoTags, now.RepoDigests...) {
			if !slices.Contains(refs, r) {
				refs = append(refs, r)
			}
		}
	}
	var untagErrs []string
	for _, r := range refs {
		if err := p.opts.Daemon.Untag(ctx, r); err != nil && !errors.Is(err, ErrNotFound) {
			untagErrs = append(untagErrs, fmt.Sprintf("%s: %v", r, err))
		}
	}
	var normRefs []string
	for _, r := range refs {
		normRefs = append(normRefs, normalize(r))
	}
	p.quarantine(img.ID, failed, requested, normRefs, d)
	d.reason = "removed after pull"
	if len(untagErrs) > 0 {
		d.reason = "quarantined; removal failed: " + strings.Join(untagErrs, "; ")
	}
	d.msg += ". The pulled image was removed and quarantined"
	return d
}

// quarantine records the failing platforms of an image ("" for an image
// of one platform) under the references it was pulled as, for a pull of
// the platform requested.
func (p *Plugin) quarantine(id string, platforms []string, requested string, refs []string, d decision) {
	summary := "image denied"
	if d.verdict != nil {
		summary = d.verdict.Summary
	}
	for _, pl := range platforms {
		q := Quarantined{ImageID: id, Platform: pl, Requested: requested, Refs: refs, Summary: summary, At: time.Now().UTC()}
		if err := p.opts.Verdicts.Quarantine(q); err != nil {
			p.opts.Log.WithError(err).Error("quarantine write failed")
		}
	}
}

func refTail(ref string) string {
	if i := strings.LastIndex(ref, "/"); i >= 0 {
		return ref[i+1:]
	}
	return ref
}

// reposTags lists an image's tags in the repository repo.
// reposTags lists the tags of img in the repository repo, however
// either is written ("app" and "docker.io/library/app:1" match).
func reposTags(img ImageInfo, repo string) []string {
	name, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return nil
	}
	var out []string
	for _, t := range img.RepoTags {
		if n, err := reference.ParseNormalizedNamed(t); err == nil && n.Name() == name.Name() {
			out = append(out, t)
		}
	}
	return out
}

// normalize gives a reference's full form (docker.io/library/alpine:3.10)
// so that quarantine matches however a name is written.
func normalize(ref string) string {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return reference.TagNameOnly(n).String()
}

func (p *Plugin) gateCreate(ctx context.Context, call *Call, pol *scoring.Policy) decision {
	ref := call.Image
	info, err := p.opts.Daemon.Inspect(ctx, ref)
	switch {
	case errors.Is(err, ErrNotFound):
		// The daemon answers 404 and the CLI pulls, through the pull gate.
		return decision{allow: true, image: ref, reason: "image not present"}
	case err != nil:
		return p.daemonError(ctx, "run", ref, pol, err)
	}
	// A quarantined image needs no lookup here: it was quarantined for
	// its verdict, which denies it again (or allows it, once approved).
	return p.judgeImage(ctx, "run", ref, info, call.Platform, named, pol)
}

// gateStart checks a container's image again when it starts: a container
// created before DIVDS was enabled, or under mode: audit, must not run an
// image the policy now denies. The daemon resolves the name (an ID, a
// prefix, a name or a link alias); the verdict is that of the image ID
// the container runs, whatever its image name now points to.
func (p *Plugin) gateStart(ctx context.Context, call *Call, pol *scoring.Policy) decision {
	return p.containerVerdict(ctx, "run", call, pol)
}

// gateExec refuses new processes in a container whose image fails.
func (p *Plugin) gateExec(ctx context.Context, call *Call, pol *scoring.Policy) decision {
	return p.containerVerdict(ctx, "exec", call, pol)
}

func (p *Plugin) containerVerdict(ctx context.Context, action string, call *Call, pol *scoring.Policy) decision {
	// The daemon resolves the name again when it acts: no rename may
	// point it at another container until the response.
	p.locks.beginRun(call.Name, action+" of "+call.Name)
	d := p.judgeContainer(ctx, action, call, pol)
	if !d.allow {
		p.locks.endRun(call.Name)
	}
	return d
}

func (p *Plugin) judgeContainer(ctx context.Context, action string, call *Call, pol *scoring.Policy) decision {
	c, err := p.opts.Daemon.Container(ctx, call.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		return decision{allow: true, image: "container " + call.Name, reason: "no such container"}
	case err != nil:
		return p.daemonError(ctx, action, "container "+call.Name, pol, err)
	}
	return p.judgeImage(ctx, action, containerRef(c), p.imageOf(ctx, c.ImageID), c.Platform, acted, pol)
}

// containerRef is how a container's image is named in verdicts and
// audit records: the image reference it was created from, else its ID.
func containerRef(c Container) string {
	if c.Image != "" && !strings.HasPrefix(c.Image, "sha256:") {
		return c.Image
	}
	return c.ImageID
}

// gatePluginAdmin refuses disabling, removing, reconfiguring or
// upgrading this plugin through the API, unless the policy allows it:
// a user of the docker CLI must not be able to switch the gate off.
func (p *Plugin) gatePluginAdmin(ctx context.Context, call *Call, pol *scoring.Policy) decision {
	if p.opts.PluginName == "" || pol.AllowPluginAdmin {
		return allow()
	}
	deny := decision{
		image:  call.Name,
		reason: "self-protection",
		msg: fmt.Sprintf("divds: %s %s on the divds plugin itself is refused; set allow_plugin_admin: true in %s and reload to allow it",
			call.Method, call.Path, p.opts.PolicyPath),
	}
	if samePlugin(call.Name, p.opts.PluginName) {
		return deny
	}
	// The daemon also takes a plugin's ID or a prefix of it: ask it which
	// plugin is meant, and refuse when unsure.
	name, err := p.opts.Daemon.PluginName(ctx, call.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		return allow()
	case err != nil:
		deny.err, deny.reason = err, "error"
		deny.msg = fmt.Sprintf("divds: %s %s refused: could not tell whether it names the divds plugin: %v", call.Method, call.Path, err)
		return deny
	case samePlugin(name, p.opts.PluginName):
		return deny
	}
	return allow()
}

// samePlugin compares plugin names with and without the :latest tag.
func samePlugin(a, b string) bool {
	trim := func(s string) string { return strings.TrimSuffix(strings.TrimSuffix(s, "/"), ":latest") }
	return trim(a) == trim(b)
}
