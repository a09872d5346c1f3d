package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/go-plugins-helpers/authorization"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/divds/divds/audit"
	"github.com/divds/divds/authz"
	"github.com/divds/divds/authz/dockerd"
	"github.com/divds/divds/report"
	"github.com/divds/divds/scanner"
	"github.com/divds/divds/scanner/cache"
	"github.com/divds/divds/scanner/source"
	"github.com/divds/divds/scanner/updater"
	"github.com/divds/divds/scanner/vulnstore"
	"github.com/divds/divds/scoring"
)

type serveFlags struct {
	socket         string
	dockerHost     string
	noUpdate       bool
	metricsAddr    string
	syslogAddr     string
	syslogFacility string
	pluginName     string
	updateInterval time.Duration
	mirror         string
	registryAuth   string
}

func (a *app) serveCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Docker authorization plugin",
		Long: `Run the DIVDS authorization plugin. Configure dockerd with
--authorization-plugin=divds (or "authorization-plugins": ["divds"] in
/etc/docker/daemon.json). The plugin gates docker pull, push and container
creation with the policy, removes pulled images that fail, and writes every
decision to syslog. It loads the policy and opens the database once; it
reloads the policy on SIGHUP or when the file changes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.serve(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.socket, "socket", "/run/docker/plugins/divds.sock", "the plugin's unix socket (ignored under systemd socket activation)")
	fl.StringVar(&f.dockerHost, "docker-host", "", "the Docker daemon the plugin inspects images through (default: $DOCKER_HOST or the local socket)")
	fl.BoolVar(&f.noUpdate, "no-update", false, "do not run the background database updater")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9323)")
	fl.StringVar(&f.syslogAddr, "syslog", "unixgram:///dev/log", "where audit records go: unixgram://PATH, unix://PATH, udp://HOST:PORT or tcp://HOST:PORT")
	fl.StringVar(&f.syslogFacility, "syslog-facility", "authpriv", "syslog facility of audit records")
	fl.StringVar(&f.pluginName, "plugin-name", "divds", "the plugin's name as the daemon knows it (self-protection)")
	fl.DurationVar(&f.updateInterval, "update-interval", 6*time.Hour, "time between background database updates")
	fl.StringVar(&f.mirror, "mirror", "", "background updates read this offline mirror instead of the network")
	fl.StringVar(&f.registryAuth, "registry-auth", "", "a docker config.json with registry credentials, for pull_scan: before (default: anonymous)")
	return cmd
}

// dbState adapts the database handle to the gates' freshness rule.
type dbState struct {
	h *vulnstore.Handle

	mu     sync.Mutex
	rev    uint64
	oldest time.Time
}

func (d *dbState) Revision(pol *scoring.Policy) (uint64, error) {
	meta, ok := d.h.Meta()
	if !ok {
		if err := d.h.Err(); errors.Is(err, vulnstore.ErrCorrupt) {
			return 0, fmt.Errorf("%w: %w", errNoDatabase, err)
		}
		return 0, fmt.Errorf("%w at the state directory: run `divds-authz db update`", errNoDatabase)
	}
	oldest, err := d.oldestFor(meta.Revision)
	if err != nil {
		return 0, err
	}
	if age := time.Since(oldest); !oldest.IsZero() && age > pol.DB.MaxAge {
		return 0, fmt.Errorf("the vulnerability database is %s old, older than db.max_age %s: run `divds-authz db update` (and check the updater's log)",
			age.Round(time.Minute), scoring.FormatDuration(pol.DB.MaxAge))
	}
	return meta.Revision, nil
}

func (d *dbState) oldestFor(rev uint64) (time.Time, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rev == rev && !d.oldest.IsZero() {
		return d.oldest, nil
	}
	s, release, err := d.h.Acquire()
	if err != nil {
		return time.Time{}, err
	}
	defer release()
	oldest, err := s.OldestUpdate()
	if err != nil {
		return time.Time{}, err
	}
	d.rev, d.oldest = s.Revision(), oldest
	return oldest, nil
}

func (d *dbState) age() float64 {
	meta, ok := d.h.Meta()
	if !ok {
		return -1
	}
	o, err := d.oldestFor(meta.Revision)
	if err != nil || o.IsZero() {
		return -1
	}
	return time.Since(o).Seconds()
}

func (a *app) serve(ctx context.Context, f serveFlags) error {
	log := a.log
	pol, err := a.loadPolicy()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(a.stateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	handle, err := vulnstore.NewHandle(vulnstore.Path(a.stateDir))
	if err != nil {
		return err
	}
	defer handle.Close()
	if err := handle.Err(); errors.Is(err, vulnstore.ErrCorrupt) {
		log.WithError(err).Error("no usable vulnerability database: every gated action follows on_error until it is replaced")
	}
	db := &dbState{h: handle}

	dc, err := dockerClient(f.dockerHost)
	if err != nil {
		return err
	}
	defer dc.Close()
	daemon := dockerd.New(dc)

	scanCache, err := cache.Open(a.stateDir, 5*time.Second, log)
	if err != nil {
		return err
	}
	defer scanCache.Close()
	sc := scanner.New(scanner.Options{Cache: scanCache})
	metrics := authz.NewMetrics(db.age)
	// scanWith scans what src names against the database in use, and
	// reports which revision that was.
	scanWith := func(src func(string) source.Source) authz.ScanFunc {
		return func(ctx context.Context, image string) (*report.Report, uint64, error) {
			start := time.Now()
			defer func() { metrics.ObserveScan(time.Since(start).Seconds()) }()
			s, release, err := handle.Acquire()
			if err != nil {
				return nil, 0, err
			}
			defer release()
			rep, st, err := sc.Scan(ctx, src(image), s)
			if err != nil {
				return nil, 0, err
			}
			log.WithFields(logrus.Fields{"image": image, "layers_read": st.LayersRead, "layers_cached": st.LayersCached,
				"read": st.Read, "index": st.Index, "match": st.Match}).Debug("scanned")
			for _, w := range rep.Warnings {
				log.WithField("image", image).Warn(w)
			}
			return rep, s.Revision(), nil
		}
	}
	// A local scan is of an image key: an image ID, or one platform of an
	// index on the containerd store (authz.ImageKey).
	// On the containerd image store, layers are read from containerd's
	// snapshot directories (docker info names its socket).
	stores := &source.StoreFinder{}
	defer stores.Close()
	scan := scanWith(func(key string) source.Source {
		id, platform := authz.SplitImageKey(key)
		return source.Docker{Client: dc, Ref: id, Platform: platform, Containerd: stores.Find(ctx, dc)}
	})
	remoteScan := func(ctx context.Context, ref, platform string) (*report.Report, uint64, error) {
		src := source.Registry{Ref: ref}
		if f.registryAuth != "" {
			src.Keychain = source.ConfigKeychain{Path: f.registryAuth}
		}
		if platform != "" {
			p, err := v1.ParsePlatform(platform)
			if err != nil {
				return nil, 0, fmt.Errorf("platform %q: %w", platform, err)
			}
			src.Platform = p
		}
		return scanWith(func(string) source.Source { return src })(ctx, ref)
	}
	verdicts, err := authz.OpenVerdicts(a.stateDir, scan)
	if err != nil {
		return err
	}
	defer verdicts.Close()

	sys, err := audit.NewSyslog(audit.SyslogOptions{Address: f.syslogAddr, Facility: f.syslogFacility, Log: log,
		Spool: filepath.Join(a.stateDir, auditSpool)})
	if err != nil {
		return err
	}
	jsonCopy := audit.NewJSON(a.stderr)
	auditor := audit.Multi{sys, jsonCopy}
	plugin := authz.New(pol, authz.Options{
		Daemon: daemon, Verdicts: verdicts, Database: db, Auditor: auditor, Metrics: metrics, Log: log,
		PolicyPath: a.policyPath, PluginName: f.pluginName, RemoteScan: remoteScan,
	})

	l, activated, err := listen(f.socket)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	h := authorization.NewHandler(plugin)
	h.HandleFunc(statusPath, a.statusHandler(plugin, verdicts, db))
	go func() {
		if err := h.Serve(l); err != nil && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
			log.WithError(err).Error("plugin socket closed")
			cancel()
		}
	}()
	where := f.socket
	if activated {
		where = "the socket systemd passed"
	}
	log.WithFields(logrus.Fields{"policy": a.policyPath, "policy_digest": pol.Digest(), "state_dir": a.stateDir}).Infof("divds-authz %s serving on %s", version, where)

	if f.metricsAddr != "" {
		srv := &http.Server{Addr: f.metricsAddr, Handler: a.metricsMux(metrics, plugin, db), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.WithError(err).Error("metrics server")
			}
		}()
		defer srv.Close()
	}
	if !f.noUpdate {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.backgroundUpdates(ctx, handle, f)
		}()
	} else if _, ok := handle.Meta(); !ok {
		log.Warn("no vulnerability database and --no-update: every gated action follows on_error until `divds-authz db update` runs")
	}
	review, started := a.startReviews(ctx, &wg, plugin)
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.arrivals(ctx, daemon, verdicts, db, plugin, dockerd.Handlers{
			Connected: func() { review("dockerd connected") },
			// A container the daemon restarts by itself (restart policy,
			// swarm task) passes no gate.
			Started: started,
			Died:    plugin.ContainerDied,
		})
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.watchPolicy(ctx, plugin, auditor, func() { review("policy reloaded") })
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		// A database swapped in by `db update` from the CLI is picked up
		// too. The revision is compared, not Reload's answer: the
		// background updater reloads the handle itself.
		revision := func() uint64 { m, _ := handle.Meta(); return m.Revision }
		last := revision()
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := handle.Reload(); err != nil && !errors.Is(err, vulnstore.ErrNotExist) {
					log.WithError(err).Warn("vulnerability database reload failed; the previous one stays in use")
				}
				rev := revision()
				if rev == last {
					continue
				}
				last = rev
				n, perr := verdicts.Prune(rev)
				if perr != nil {
					log.WithError(perr).Warn("pruning old verdicts failed")
				}
				log.WithFields(logrus.Fields{"revision": rev, "pruned": n}).Info("vulnerability database changed; verdicts will be recomputed")
				review("database changed")
			}
		}
	}()
	sdNotify("READY=1\nSTATUS=serving")

	<-ctx.Done()
	sdNotify("STOPPING=1")
	log.Info("shutting down: flushing the audit queue")
	l.Close()
	if !activated {
		os.Remove(f.socket)
	}
	if err := sys.Close(10 * time.Second); err != nil {
		log.WithError(err).Error("audit records lost at shutdown")
	}
	cancel()
	wg.Wait() // the policy watcher may still audit a reload
	if err := jsonCopy.Close(5 * time.Second); err != nil {
		log.WithError(err).Warn(err)
	}
	return nil
}

func (a *app) metricsMux(m *authz.Metrics, p *authz.Plugin, db *dbState) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if _, err := db.Revision(p.Policy()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// backgroundUpdates keeps the database fresh. With no database at all
// it updates at once and, if every updater fails (no network), installs
// the shipped sample so the gates have data, labelled as sample.
func (a *app) backgroundUpdates(ctx context.Context, h *vulnstore.Handle, f serveFlags) {
	log := a.log.WithField("component", "updater")
	_, have := h.Meta()
	update := func(ctx context.Context) error {
		opts := updater.Options{}
		if f.mirror != "" {
			opts.Client = mirrorClient(os.DirFS(f.mirror))
		}
		res, err := a.runUpdate(ctx, opts, false, nil)
		if err == nil || res.Sample {
			h.Reload()
		}
		if err == nil {
			log.WithFields(logrus.Fields{"revision": res.Meta.Revision, "failed": res.Summary.Failed()}).Info("vulnerability database updated")
		}
		return err
	}
	updater.Background(ctx, updater.BackgroundOptions{
		Interval: f.updateInterval, Initial: !have, Update: update,
		OnError: func(err error, retry time.Duration) {
			log.WithError(err).Warnf("database update failed; retrying in %s", retry.Round(time.Second))
		},
	})
}

// arrivals scans images as they arrive, one at a time, so that the gates
// answer from the cache. Pulls are decided as the pull gate's response
// phase decides them (see authz.Plugin.PulledByEvent). The time of the
// last event handled is kept in the state directory: a restarted plugin
// replays what the daemon did meanwhile.
func (a *app) arrivals(ctx context.Context, d dockerd.Daemon, v *authz.Verdicts, db *dbState, p *authz.Plugin, h dockerd.Handlers) {
	type arrival struct {
		ref    string
		pulled bool
	}
	queue := make(chan arrival, 256)
	enqueue := func(a arrival) {
		select {
		case queue <- a:
		default: // a burst: the gates scan on demand anyway
		}
	}
	h.Arrived = func(_ context.Context, ref string) { enqueue(arrival{ref: ref}) }
	h.Pulled = func(_ context.Context, ref string) { enqueue(arrival{ref: ref, pulled: true}) }
	mark := eventMark{path: filepath.Join(a.stateDir, eventsFile)}
	h.Since = mark.load(a.log)
	h.Handled = mark.save
	go d.Follow(ctx, a.log, h)
	for {
		select {
		case <-ctx.Done():
			return
		case next := <-queue:
			if next.pulled && p.DecidesPulls() {
				// It may wait for a gated pull's response: not in line.
				go p.PulledByEvent(ctx, next.ref)
				continue
			}
			pol, digest := p.Current()
			rev, err := db.Revision(pol)
			if err != nil {
				continue
			}
			info, err := d.Inspect(ctx, next.ref)
			if err != nil {
				continue
			}
			if _, err := v.Get(ctx, authz.DefaultKey(info), rev, pol, digest, nil); err != nil {
				a.log.WithError(err).WithField("image", next.ref).Warn("arrival scan failed")
			}
		}
	}
}

// auditSpool keeps the audit records syslog has not received yet.
const auditSpool = "audit.spool"

// eventsFile keeps the time of the last daemon event handled.
const eventsFile = "events.since"

// eventMark persists the time of the last event handled, at most once a
// second (a replay from a little earlier only repeats cached decisions).
type eventMark struct {
	path    string
	written time.Time
}

// load returns the time to replay from: the mark, if it is recent enough
// for the daemon to still hold its events, else zero (from now).
func (m *eventMark) load(log logrus.FieldLogger) time.Time {
	b, err := os.ReadFile(m.path)
	if err != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil || time.Since(t) > 24*time.Hour || t.After(time.Now()) {
		return time.Time{}
	}
	// An event is marked when it is dispatched, and a pull's decision may
	// wait for a gated pull's response for a while after that: replaying
	// from a little earlier covers a kill in between (a replay only
	// repeats decisions, each idempotent).
	t = t.Add(-replayMargin)
	log.WithField("since", t).Info("replaying the daemon's events since the last one handled")
	return t
}

// replayMargin is how far before the mark a restart replays: longer than
// a pull event may wait (authz's pullEventWait, 2 minutes).
const replayMargin = 3 * time.Minute

func (m *eventMark) save(t time.Time) {
	if t.Sub(m.written) < time.Second {
		return
	}
	m.written = t
	tmp := m.path + ".tmp"
	if os.WriteFile(tmp, []byte(t.UTC().Format(time.RFC3339Nano)+"\n"), 0o600) == nil {
		os.Rename(tmp, m.path)
	}
}

// startReviews starts the reviews of the running containers, and returns
// how to ask for one: of all of them (when dockerd (re)connects, the
// database changes or the policy is reloaded), or of a container that
// started. Occasions that come while a review runs are merged into the
// next.
func (a *app) startReviews(ctx context.Context, wg *sync.WaitGroup, p *authz.Plugin) (review, started func(string)) {
	reviewCh := make(chan string, 1)
	review = func(why string) {
		select {
		case reviewCh <- why:
		default:
		}
	}
	startedCh := make(chan string, 64)
	started = func(id string) {
		select {
		case startedCh <- id:
		default: // a burst of starts: review them all at once
			review("containers started")
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.reviews(ctx, p, reviewCh, startedCh)
	}()
	return review, started
}

// reviews runs a review of the running containers for each occasion
// received, and of each container that started, one at a time.
func (a *app) reviews(ctx context.Context, p *authz.Plugin, occasions <-chan string, started <-chan string) {
	for {
		var (
			r   authz.Review
			err error
			why string
		)
		select {
		case <-ctx.Done():
			return
		case why = <-occasions:
			r, err = p.ReviewRunning(ctx, why)
		case id := <-started:
			why = "container started"
			if r, err = p.ReviewContainer(ctx, id, why); err == nil && r.Denied == 0 {
				continue // the usual case: a start the gates already allowed
			}
		}
		if err != nil {
			a.log.WithError(err).Warnf("review of the running containers (%s) failed", why)
			continue
		}
		a.log.WithFields(logrus.Fields{"checked": r.Checked, "denied": r.Denied, "stopped": r.Stopped, "unknown": r.Unknown}).
			Infof("reviewed the running containers (%s)", why)
	}
}

// watchPolicy reloads the policy on SIGHUP and when the file changes. An
// invalid policy is refused: the one in force stays, and the refusal is
// logged and audited.
func (a *app) watchPolicy(ctx context.Context, p *authz.Plugin, auditor audit.Auditor, reloaded func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	stamp := func() string {
		st, err := os.Stat(a.policyPath)
		if err != nil {
			return "missing"
		}
		return fmt.Sprintf("%d/%d/%v", st.Size(), st.ModTime().UnixNano(), st.Sys())
	}
	last := stamp()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	reload := func(why string) {
		pol, err := readPolicy(a.policyPath)
		if errors.Is(err, fs.ErrNotExist) && !a.root.PersistentFlags().Changed("policy") {
			pol, err = scoring.Default(), nil
		}
		rec := audit.Record{Time: time.Now().UTC(), Action: "policy-reload", Reason: why, Phase: "reload"}
		if err != nil {
			a.log.WithError(err).Errorf("policy reload (%s) refused; the policy in force stays (digest %s)", why, p.PolicyDigest())
			rec.Decision, rec.Error, rec.Policy = "refused", err.Error(), p.PolicyDigest()
			auditor.Record(rec)
			return
		}
		if pol.Digest() == p.PolicyDigest() {
			return
		}
		p.SetPolicy(pol)
		rec.Decision, rec.Policy = "reloaded", pol.Digest()
		auditor.Record(rec)
		a.log.WithField("policy_digest", pol.Digest()).Infof("policy reloaded (%s)", why)
		reloaded()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			last = stamp()
			reload("SIGHUP")
		case <-t.C:
			if s := stamp(); s != last {
				last = s
				reload("file changed")
			}
		}
	}
}
