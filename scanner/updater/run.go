package updater

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/quay/claircore"
	"github.com/quay/claircore/libvuln/driver"
	"golang.org/x/sync/errgroup"

	"github.com/divds/divds/scanner/vulnstore"
)

// Options configure a run. The zero value runs every default set over
// http.DefaultClient, two updaters at a time.
type Options struct {
	// Sets names the updater sets to run. Default DefaultSets.
	Sets []string
	// Client makes every request. Default http.DefaultClient. A mirror's
	// client (package mirror) makes the run offline.
	Client *http.Client
	// Concurrency is how many updaters fetch and parse at once. Default 2.
	Concurrency int
	// Events, when set, receives progress: one call when an updater
	// starts and one when it ends. It must not block.
	Events func(Event)
}

// Status is how an updater's run ended.
type Status string

// The outcomes of one updater.
const (
	Running   Status = "running"
	Updated   Status = "updated"
	Unchanged Status = "unchanged"
	Failed    Status = "failed"
)

// Event reports progress.
type Event struct {
	Set, Updater string
	Status       Status
	Records      int
	Err          error
	Duration     time.Duration
}

// Result is the outcome of one updater, or of a set that failed before
// it had any updater (then Updater is "").
type Result struct {
	Set      string        `json:"set"`
	Updater  string        `json:"updater,omitempty"`
	Status   Status        `json:"status"`
	Records  int           `json:"records"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Summary is the outcome of a run.
type Summary struct {
	Results []Result
}

// Failed counts failed updaters and sets.
func (s Summary) Failed() int {
	n := 0
	for _, r := range s.Results {
		if r.Status == Failed {
			n++
		}
	}
	return n
}

// AllFailed reports whether nothing succeeded (and something ran).
func (s Summary) AllFailed() bool { return len(s.Results) > 0 && s.Failed() == len(s.Results) }

func noopConfig(any) error { return nil }

type job struct {
	set string
	u   driver.Updater
}

// Run runs the updater sets and writes what they fetched into b. A
// failing updater keeps its previous data and is reported in the
// summary; a set that yields no updater is a failure too (claircore's
// ubuntu set quietly yields none when it finds no OVAL file). Run returns
// an error only when the builder cannot be written.
func Run(ctx context.Context, b *vulnstore.Builder, opts Options) (Summary, error) {
	if opts.Sets == nil {
		opts.Sets = DefaultSets
	}
	if opts.Client == nil {
		opts.Client = http.DefaultClient
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 2
	}
	emit := func(e Event) {
		if opts.Events != nil {
			opts.Events(e)
		}
	}
	var (
		sum  Summary
		mu   sync.Mutex // guards sum and b
		jobs []job
	)
	record := func(r Result) {
		mu.Lock()
		sum.Results = append(sum.Results, r)
		mu.Unlock()
		emit(Event{Set: r.Set, Updater: r.Updater, Status: r.Status, Records: r.Records, Duration: r.Duration, Err: errorOf(r.Error)})
	}
	for _, name := range opts.Sets {
		start := time.Now()
		us, err := updaters(ctx, name, opts.Client)
		if err != nil {
			record(Result{Set: name, Status: Failed, Error: err.Error(), Duration: time.Since(start)})
			continue
		}
		for _, u := range us {
			jobs = append(jobs, job{set: name, u: u})
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Concurrency)
	for _, j := range jobs {
		g.Go(func() error {
			name := j.u.Name()
			emit(Event{Set: j.set, Updater: name, Status: Running})
			start := time.Now()
			mu.Lock()
			prev, _ := b.Previous(name)
			mu.Unlock()
			out, err := fetchParse(gctx, j.u, prev.Fingerprint)
			res := Result{Set: j.set, Updater: name, Duration: time.Since(start)}
			kind := vulnstore.KindVulnerability
			if out.enrichment {
				kind = vulnstore.KindEnrichment
			}
			mu.Lock()
			var werr error
			switch {
			case errors.Is(err, driver.Unchanged):
				res.Status, res.Records = Unchanged, prev.Records
				b.MarkUnchanged(name, kind)
			case err != nil:
				res.Status, res.Error, res.Records = Failed, err.Error(), prev.Records
				b.MarkFailed(name, kind, err)
			default:
				res.Status = Updated
				res.Records, werr = write(gctx, b, name, kind, out)
			}
			mu.Unlock()
			if werr != nil {
				return fmt.Errorf("store %s: %w", name, werr)
			}
			record(res)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return sum, err
	}
	sort.SliceStable(sum.Results, func(i, j int) bool {
		a, c := sum.Results[i], sum.Results[j]
		if a.Set != c.Set {
			return slices.Index(opts.Sets, a.Set) < slices.Index(opts.Sets, c.Set)
		}
		return a.Updater < c.Updater
	})
	return sum, ctx.Err()
}

func errorOf(s string) error {
	if s == "" {
		return nil
	}
	return errors.New(s)
}

// updaters configures a set's factory and lists its configured updaters.
func updaters(ctx context.Context, name string, c *http.Client) ([]driver.Updater, error) {
	f, err := newFactory(ctx, name)
	if err != nil {
		return nil, err
	}
	if cf, ok := f.(driver.Configurable); ok {
		if err := cf.Configure(ctx, noopConfig, c); err != nil {
			return nil, fmt.Errorf("configure %s: %w", name, err)
		}
	}
	set, err := f.UpdaterSet(ctx)
	if err != nil {
		return nil, fmt.Errorf("updater set %s: %w", name, err)
	}
	var out []driver.Updater
	var errs []error
	for _, u := range set.Updaters() {
		if cu, ok := u.(driver.Configurable); ok {
			if err := cu.Configure(ctx, noopConfig, c); err != nil {
				errs = append(errs, fmt.Errorf("configure %s: %w", u.Name(), err))
				continue
			}
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return nil, fmt.Errorf("updater set %s produced no updaters: its source listed no release (is the network or the mirror complete?)", name)
	}
	return out, nil
}

type parsed struct {
	enrichment bool
	fp         driver.Fingerprint
	vulns      []*claircore.Vulnerability
	deleted    []string
	delta      bool
	enrich     []driver.EnrichmentRecord
}

// fetchParse is claircore's update protocol for one updater: fetch with
// the previous fingerprint, then parse (or delta-parse, or parse
// enrichments).
func fetchParse(ctx context.Context, u driver.Updater, prev driver.Fingerprint) (out parsed, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("updater %s panicked: %v", u.Name(), r)
		}
	}()
	var rc io.ReadCloser
	eu, isEnrich := u.(driver.EnrichmentUpdater)
	out.enrichment = isEnrich
	if isEnrich {
		rc, out.fp, err = eu.FetchEnrichment(ctx, prev)
	} else {
		rc, out.fp, err = u.Fetch(ctx, prev)
	}
	if rc != nil {
		defer rc.Close()
	}
	if err != nil {
		if errors.Is(err, driver.Unchanged) {
			return out, err
		}
		return out, fmt.Errorf("fetch: %w", err)
	}
	switch du, isDelta := u.(driver.DeltaUpdater); {
	case isEnrich:
		out.enrich, err = eu.ParseEnrichment(ctx, rc)
	case isDelta:
		out.delta = true
		out.vulns, out.deleted, err = du.DeltaParse(ctx, rc)
	default:
		out.vulns, err = u.Parse(ctx, rc)
	}
	if err != nil {
		return out, fmt.Errorf("parse: %w", err)
	}
	return out, nil
}

// write replaces an updater's data in b. A delta update keeps the
// previous records that it neither deletes nor replaces, as claircore's
// stores do.
func write(ctx context.Context, b *vulnstore.Builder, name string, kind vulnstore.Kind, p parsed) (int, error) {
	if err := b.StartUpdater(name, kind, p.fp, time.Now()); err != nil {
		return 0, err
	}
	n := 0
	if p.delta && b.Old() != nil {
		drop := map[string]bool{}
		for _, d := range p.deleted {
			drop[d] = true
		}
		for _, v := range p.vulns {
			drop[v.Name] = true
		}
		err := b.Old().EachVulnerability(ctx, func(upd string, v *claircore.Vulnerability) error {
			if upd != name || drop[v.Name] {
				return nil
			}
			n++
			return b.AddVulnerability(v)
		})
		if err != nil {
			return 0, err
		}
	}
	for _, v := range p.vulns {
		if err := b.AddVulnerability(v); err != nil {
			return 0, err
		}
		n++
	}
	for _, e := range p.enrich {
		if err := b.AddEnrichment(e); err != nil {
			return 0, err
		}
		n++
	}
	return n, b.FinishUpdater()
}
