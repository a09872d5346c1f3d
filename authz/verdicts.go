package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/singleflight"

	"github.com/divds/divds/report"
	"github.com/divds/divds/scoring"
)

// VerdictsFile is the verdict cache and quarantine in the state directory.
const VerdictsFile = "verdicts.db"

var (
	bucketReports    = []byte("reports")    // imageID|revision -> trimmed report
	bucketVerdicts   = []byte("verdicts")   // imageID|revision|policy digest -> Verdict
	bucketQuarantine = []byte("quarantine") // imageID -> Quarantined
)

// ScanFunc scans a local image by ID and returns its report and the
// database revision it was matched against; the caller's wiring picks
// source and store.
type ScanFunc func(ctx context.Context, image string) (*report.Report, uint64, error)

// RemoteScanFunc scans an image in its registry, for the platform given
// as os/arch[/variant] (empty: the host's), as ScanFunc does a local one.
type RemoteScanFunc func(ctx context.Context, ref, platform string) (*report.Report, uint64, error)

// Verdict is a decision about one image under one database revision and
// one policy, cached and persisted.
type Verdict struct {
	ImageID      string          `json:"image_id"`
	Revision     uint64          `json:"revision"`
	PolicyDigest string          `json:"policy_digest"`
	Verdict      scoring.Verdict `json:"verdict"`
	Exceeded     bool            `json:"exceeded"`
	Mode         scoring.Mode    `json:"mode"`
	Score        scoring.Points  `json:"score"`
	Threshold    scoring.Points  `json:"threshold"`
	Summary      string          `json:"summary"`
	Counts       report.Counts   `json:"counts"`
	Approved     int             `json:"approved"`
	Top          []string        `json:"top,omitempty"`
	Sample       bool            `json:"sample,omitempty"`
	At           time.Time       `json:"at"`
	// ValidUntil is when a whitelist entry it counted lapses (zero:
	// never); the cache does not answer with it from then on.
	ValidUntil time.Time `json:"valid_until,omitzero"`
	// Coverage is how far the image could be diagnosed (scoring.Coverage).
	Coverage string `json:"coverage,omitempty"`
	// Cached is set when the verdict came from the cache.
	Cached bool `json:"-"`
}

// Quarantined is an image that failed after a pull.
type Quarantined struct {
	ImageID string `json:"image_id"`
	// Platform is the failing platform of an image of several ("" for an
	// image of one platform): the others are not quarantined.
	Platform string `json:"platform,omitempty"`
	// Requested is the platform the pull asked for (the host's when it
	// named none). On the classic store a tag names one platform's image:
	// a pull of another platform of the same name brings another image,
	// which this quarantine does not concern.
	Requested string    `json:"requested,omitempty"`
	Refs      []string  `json:"refs"`
	Summary   string    `json:"summary"`
	At        time.Time `json:"at"`
}

// Verdicts computes verdicts: each image is scanned once per database
// revision (concurrent requests share one scan), each report is
// evaluated once per policy, and both persist across restarts so that a
// restarted plugin answers the run gate from the cache.
type Verdicts struct {
	db   *bolt.DB
	scan ScanFunc
	now  func() time.Time

	group   singleflight.Group
	mu      sync.RWMutex
	mem     map[string]*Verdict       // by verdict key
	reports map[string]*report.Report // by report key: a policy that looks at image names evaluates per request
}

// maxReports bounds the reports kept in memory; a full map is dropped and
// refilled from the store.
const maxReports = 512

// OpenVerdicts opens (creating) the verdict store in stateDir.
func OpenVerdicts(stateDir string, scan ScanFunc) (*Verdicts, error) {
	p := filepath.Join(stateDir, VerdictsFile)
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("open verdict store %s: %w (is another divds-authz serve running?)", p, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketReports, bucketVerdicts, bucketQuarantine} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open verdict store %s: %w", p, err)
	}
	return &Verdicts{db: db, scan: scan, now: time.Now, mem: map[string]*Verdict{}, reports: map[string]*report.Report{}}, nil
}

// Close closes the store.
func (v *Verdicts) Close() error { return v.db.Close() }

func reportKey(id string, rev uint64) string { return fmt.Sprintf("%s|%d", id, rev) }
func verdictKey(id string, rev uint64, digest string) string {
	return fmt.Sprintf("%s|%d|%s", id, rev, digest)
}

// Cached returns the cached verdict under the policy of the given digest,
// without scanning.
func (v *Verdicts) Cached(id string, rev uint64, digest string) *Verdict {
	key := verdictKey(id, rev, digest)
	v.mu.RLock()
	vd := v.mem[key]
	v.mu.RUnlock()
	if vd == nil {
		var stored Verdict
		if !v.get(bucketVerdicts, key, &stored) {
			return nil
		}
		vd = &stored
		v.mu.Lock()
		v.mem[key] = vd
		v.mu.Unlock()
	}
	if !vd.ValidUntil.IsZero() && !v.now().Before(vd.ValidUntil) {
		return nil // an approval it counted has lapsed: evaluate again
	}
	c := *vd
	c.Cached = true
	return &c
}

// Get returns the verdict for an image under the current database
// revision and policy, scanning it if no report of this revision exists.
// refs are the names the request used, for whitelist and override
// matching beside the image's own names.
// digest is pol.Digest(), computed once by the caller per loaded policy:
// it costs more than the rest of a cached decision.
func (v *Verdicts) Get(ctx context.Context, id string, rev uint64, pol *scoring.Policy, digest string, refs []string) (*Verdict, error) {
	// Request names take part in the evaluation only when the policy
	// looks at names; otherwise one cached verdict serves every name.
	cacheable := len(refs) == 0 || !dependsOnRefs(pol)
	if cacheable {
		if vd := v.Cached(id, rev, digest); vd != nil {
			return vd, nil
		}
	}
	rep, err := v.report(ctx, id, rev)
	if err != nil {
		return nil, err
	}
	return v.evaluate(rep, id, rev, pol, digest, refs, cacheable), nil
}

// GetRemote scans an image in a registry with scan, for platform, and
// returns its verdict, cached under the image ID the registry gives (the
// ID the image will have once pulled).
func (v *Verdicts) GetRemote(ctx context.Context, ref, platform string, rev uint64, pol *scoring.Policy, digest string, scan RemoteScanFunc) (*Verdict, error) {
	ch := v.group.DoChan("remote|"+ref+"|"+platform, func() (any, error) {
		r, gotRev, err := scan(context.WithoutCancel(ctx), ref, platform)
		if err != nil {
			return nil, err
		}
		trimmed := trim(r)
		if gotRev == rev && r.Image.ID != "" {
			v.put(bucketReports, reportKey(r.Image.ID, rev), trimmed)
		}
		return trimmed, nil
	})
	rep, err := await(ctx, ch)
	if err != nil {
		return nil, err
	}
	if vd := v.Cached(rep.Image.ID, rev, digest); vd != nil && !dependsOnRefs(pol) {
		return vd, nil
	}
	return v.evaluate(rep, rep.Image.ID, rev, pol, digest, []string{ref}, !dependsOnRefs(pol)), nil
}

// evaluate turns a report into a verdict, caching it when it does not
// depend on the request's names.
func (v *Verdicts) evaluate(rep *report.Report, id string, rev uint64, pol *scoring.Policy, digest string, refs []string, cacheable bool) *Verdict {
	r := *rep
	// A digest reference that resolved to this image (the daemon's
	// repository digests, a pull or a service pinned by digest) says
	// which repository it came from; other names only count when such a
	// digest vouches for their repository (report.TrustedRefs).
	r.Image.Names = append([]string{}, rep.Image.Names...)
	r.Image.Digests = append([]string{}, rep.Image.Digests...)
	for _, ref := range refs {
		if strings.Contains(ref, "@") {
			r.Image.Digests = append(r.Image.Digests, ref)
		} else {
			r.Image.Names = append(r.Image.Names, ref)
		}
	}
	now := v.now()
	res := r.Evaluate(pol, now)
	vd := &Verdict{
		ImageID: id, Revision: rev, PolicyDigest: digest, Verdict: res.Verdict, Exceeded: res.Exceeded,
		Mode: res.Mode, Score: res.Score, Threshold: res.Threshold, Summary: res.Summary(),
		Counts: r.Evaluation.Counts, Approved: res.Counts.ApprovedTotal(), Sample: rep.Database.Sample, At: now.UTC(),
		ValidUntil: pol.NextLapse(now), Coverage: string(res.Coverage),
	}
	for _, f := range res.Findings {
		if len(vd.Top) == 5 {
			break
		}
		if !f.Approved && f.Ignored == "" && f.Weight > 0 {
			vd.Top = append(vd.Top, fmt.Sprintf("%s %s %s (%s)", f.ID, f.Package, f.Version, f.Counted))
		}
	}
	key := verdictKey(id, rev, vd.PolicyDigest)
	if cacheable {
		v.mu.Lock()
		v.mem[key] = vd
		v.mu.Unlock()
		v.put(bucketVerdicts, key, vd)
	}
	return vd
}

// dependsOnRefs reports whether a policy looks at image names at all.
func dependsOnRefs(p *scoring.Policy) bool {
	if len(p.Overrides) > 0 {
		return true
	}
	for _, e := range p.Whitelist {
		if len(e.Images) > 0 {
			return true
		}
	}
	return false
}

// report returns the image's scan report for revision rev, scanning once
// for all concurrent callers.
func (v *Verdicts) report(ctx context.Context, id string, rev uint64) (*report.Report, error) {
	key := reportKey(id, rev)
	v.mu.RLock()
	mem := v.reports[key]
	v.mu.RUnlock()
	if mem != nil {
		return mem, nil
	}
	var rep report.Report
	if v.get(bucketReports, key, &rep) {
		v.remember(key, &rep)
		return &rep, nil
	}
	// The scan outlives one caller's cancellation: others may wait on it.
	ch := v.group.DoChan(key, func() (any, error) {
		r, gotRev, err := v.scan(context.WithoutCancel(ctx), id)
		if err != nil {
			return nil, err
		}
		trimmed := trim(r)
		if gotRev == rev {
			v.put(bucketReports, key, trimmed)
			v.remember(key, trimmed)
		}
		return trimmed, nil
	})
	return await(ctx, ch)
}

// await waits for a shared scan, or for the caller's context to end (the
// scan goes on for the others).
func await(ctx context.Context, ch <-chan singleflight.Result) (*report.Report, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*report.Report), nil
	}
}

// remember keeps a report (read-only from here on) in memory.
func (v *Verdicts) remember(key string, rep *report.Report) {
	v.mu.Lock()
	if len(v.reports) >= maxReports {
		clear(v.reports)
	}
	v.reports[key] = rep
	v.mu.Unlock()
}

// trim drops what verdicts never need, to keep the store small.
func trim(r *report.Report) *report.Report {
	c := *r
	c.Packages = nil
	c.Findings = make([]report.Finding, len(r.Findings))
	for i, f := range r.Findings {
		f.Description, f.Links = "", nil
		c.Findings[i] = f
	}
	return &c
}

// Scanned reports whether an image has a report for revision rev.
func (v *Verdicts) Scanned(id string, rev uint64) bool {
	found := false
	v.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketReports).Get([]byte(reportKey(id, rev))) != nil
		return nil
	})
	return found
}

// Quarantine records an image that failed after a pull.
func (v *Verdicts) Quarantine(q Quarantined) error {
	var old Quarantined
	key := ImageKey(q.ImageID, q.Platform)
	if v.get(bucketQuarantine, key, &old) {
		q.Refs = appendNew(old.Refs, q.Refs...)
	}
	return v.put(bucketQuarantine, key, q)
}

// Release lifts a quarantine, by its image key (ImageKey).
func (v *Verdicts) Release(key string) error {
	return v.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketQuarantine).Delete([]byte(key)) })
}

// QuarantinedRef finds a quarantine by one of the references it was
// pulled as, for platform: a quarantine of another platform of the same
// index does not hold a pull of this one.
func (v *Verdicts) QuarantinedRef(ref, platform string) (*Quarantined, bool) {
	var found *Quarantined
	v.eachQuarantined(func(q Quarantined) bool {
		if !contains(q.Refs, ref) {
			return true
		}
		if q.Platform == platform || q.Platform == "" && (q.Requested == "" || q.Requested == platform) {
			found = &q
			return false
		}
		return true
	})
	return found, found != nil
}

// QuarantineList lists the quarantined images, newest first.
func (v *Verdicts) QuarantineList() []Quarantined {
	out := []Quarantined{}
	v.eachQuarantined(func(q Quarantined) bool {
		out = append(out, q)
		return true
	})
	slices.SortFunc(out, func(a, b Quarantined) int { return b.At.Compare(a.At) })
	return out
}

// eachQuarantined calls fn for each quarantine until it returns false.
func (v *Verdicts) eachQuarantined(fn func(Quarantined) bool) {
	v.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQuarantine).ForEach(func(_, raw []byte) error {
			var q Quarantined
			if json.Unmarshal(raw, &q) == nil && !fn(q) {
				return errStop
			}
			return nil
		})
	})
}

var errStop = errors.New("stop")

func appendNew(list []string, more ...string) []string {
	for _, m := range more {
		if !contains(list, m) {
			list = append(list, m)
		}
	}
	return list
}

func (v *Verdicts) get(bucket []byte, key string, out any) bool {
	found := false
	v.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucket).Get([]byte(key))
		if raw != nil && json.Unmarshal(raw, out) == nil {
			found = true
		}
		return nil
	})
	return found
}

func (v *Verdicts) put(bucket []byte, key string, val any) error {
	raw, err := json.Marshal(val)
	if err != nil {
		return err
	}
	return v.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(key), raw) })
}

// Prune deletes the reports and verdicts of database revisions other
// than keep: after an update they can never be used again, and without
// pruning the store would grow with every update. Quarantines are kept.
func (v *Verdicts) Prune(keep uint64) (int, error) {
	suffix := fmt.Sprintf("|%d", keep)
	n := 0
	err := v.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketReports, bucketVerdicts} {
			b := tx.Bucket(name)
			isVerdict := string(name) == string(bucketVerdicts)
			var dead [][]byte
			b.ForEach(func(k, _ []byte) error {
				key := string(k)
				if isVerdict {
					// id|rev|digest: drop the digest.
					if i := strings.LastIndex(key, "|"); i > 0 {
						key = key[:i]
					}
				}
				if !strings.HasSuffix(key, suffix) {
					dead = append(dead, append([]byte(nil), k...))
				}
				return nil
			})
			for _, k := range dead {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			n += len(dead)
		}
		return nil
	})
	v.mu.Lock()
	for k := range v.reports {
		if !strings.HasSuffix(k, suffix) {
			delete(v.reports, k)
		}
	}
	for k := range v.mem {
		if i := strings.LastIndex(k, "|"); i < 0 || !strings.HasSuffix(k[:i], suffix) {
			delete(v.mem, k)
		}
	}
	v.mu.Unlock()
	return n, err
}
