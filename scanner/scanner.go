// Package scanner is the IVD: it reads an image from a source, indexes
// its OS packages per layer, matches them against the vulnerability
// store and returns the report (without its evaluation, which is the
// IVE's, package scoring).
package scanner

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/quay/claircore"
	"github.com/quay/claircore/libvuln/driver"

	"github.com/divds/divds/report"
	"github.com/divds/divds/scanner/index"
	"github.com/divds/divds/scanner/layerfs"
	"github.com/divds/divds/scanner/match"
	"github.com/divds/divds/scanner/source"
	"github.com/divds/divds/scanner/updater"
	"github.com/divds/divds/scanner/vulnstore"
	"github.com/divds/divds/scoring"
)

// Options configure a Scanner. The zero value is usable.
type Options struct {
	// Limits bound every read of image content.
	Limits layerfs.Limits
	// Cache keeps per-layer files and per-image indexes between scans.
	// Nil disables caching.
	Cache Cache
	// Matchers default to match.Matchers().
	Matchers []driver.Matcher
}

// Cache is what the scanner needs of a cache (package scanner/cache).
type Cache interface {
	Layer(diffID string) *layerfs.FileSet
	PutLayer(diffID string, fs *layerfs.FileSet)
	Index(key string) *index.Result
	PutIndex(key string, res *index.Result)
}

// Scanner runs the IVD.
type Scanner struct {
	opts Options
}

// New returns a Scanner.
func New(opts Options) *Scanner {
	if opts.Matchers == nil {
		opts.Matchers = match.Matchers()
	}
	return &Scanner{opts: opts}
}

// Stats say what a scan did, for benchmarks and debug logs.
type Stats struct {
	LayersRead   int
	LayersCached int
	IndexCached  bool
	Read, Index  time.Duration
	Match        time.Duration
}

// Scan reads, indexes and matches one image.
func (s *Scanner) Scan(ctx context.Context, src source.Source, store *vulnstore.Store) (*report.Report, Stats, error) {
	var st Stats
	start := time.Now()
	var cached source.Cached
	fromCache := map[string]bool{}
	if s.opts.Cache != nil {
		cached = func(diffID string) *layerfs.FileSet {
			fs := s.opts.Cache.Layer(diffID)
			if fs != nil {
				st.LayersCached++
				fromCache[diffID] = true
			}
			return fs
		}
	}
	img, err := src.Read(ctx, s.opts.Limits, cached)
	if err != nil {
		return nil, st, fmt.Errorf("read %s: %w", src.Describe(), err)
	}
	st.LayersRead = len(img.Layers) - st.LayersCached
	st.Read = time.Since(start)
	start = time.Now()
	idx, err := s.index(ctx, img, fromCache, &st)
	if err != nil {
		return nil, st, fmt.Errorf("index %s: %w", src.Describe(), err)
	}
	st.Index = time.Since(start)
	start = time.Now()
	rep, err := s.match(ctx, img, idx, store)
	st.Match = time.Since(start)
	if err != nil {
		return nil, st, fmt.Errorf("match %s: %w", src.Describe(), err)
	}
	rep.Warnings = append(append(rep.Warnings, img.Warnings...), idx.Warnings...)
	return rep, st, nil
}

func (s *Scanner) index(ctx context.Context, img *source.Image, fromCache map[string]bool, st *Stats) (*index.Result, error) {
	key := ""
	useCache := s.opts.Cache != nil && !img.Unverified
	if useCache {
		key = IndexKey(img.Layers)
		if res := s.opts.Cache.Index(key); res != nil {
			st.IndexCached = true
			return res, nil
		}
		for _, l := range img.Layers {
			if !fromCache[l.DiffID] {
				s.opts.Cache.PutLayer(l.DiffID, l.Files)
			}
		}
	}
	res, err := index.Index(ctx, img.Layers)
	if err != nil {
		return nil, err
	}
	if useCache {
		s.opts.Cache.PutIndex(key, res)
	}
	return res, nil
}

// IndexKey identifies an image's index: its layers in order and the
// scanners' versions.
func IndexKey(layers []index.Layer) string {
	k := index.ScannerVersions()
	for _, l := range layers {
		k += "|" + l.DiffID
	}
	return k
}

func (s *Scanner) match(ctx context.Context, img *source.Image, idx *index.Result, store *vulnstore.Store) (*report.Report, error) {
	rep := &report.Report{
		SchemaVersion: report.SchemaVersion,
		Image:         img.Meta,
		Packages:      []report.Package{},
		Findings:      []report.Finding{},
	}
	if d := idx.Distribution; d != nil {
		rep.Image.Distribution = distName(d)
	}
	layerID := func(i int) string {
		if i >= 0 && i < len(img.Layers) {
			return img.Layers[i].DiffID
		}
		return ""
	}
	records := make([]*claircore.IndexRecord, 0, len(idx.Packages))
	byID := map[string]index.Package{}
	for i, p := range idx.Packages {
		pkg := *p.Package // a copy: IDs are this scan's
		pkg.ID = strconv.Itoa(i)
		byID[pkg.ID] = p
		records = append(records, &claircore.IndexRecord{Package: &pkg, Distribution: idx.Distribution})
		rp := report.Package{Name: pkg.Name, Version: pkg.Version, Kind: pkg.Kind.String(), Layer: layerID(p.Layer)}
		if pkg.Source != nil {
			rp.Source = pkg.Source.Name
		}
		rep.Packages = append(rep.Packages, rp)
	}
	if store == nil {
		return rep, nil
	}
	meta := store.Meta()
	rep.Database = report.Database{Revision: meta.Revision, Sample: meta.Sample}
	if !meta.UpdatedAt.IsZero() {
		t := meta.UpdatedAt
		rep.Database.UpdatedAt = &t
	}
	vulns, err := match.Match(ctx, store, records, s.opts.Matchers)
	if err != nil {
		return nil, err
	}
	updaters, err := store.Updaters()
	if err != nil {
		return nil, err
	}
	rep.Coverage = coverage(idx.Distribution, len(idx.Packages), updaters)
	cvss := map[string]*report.CVSS{}
	for _, r := range records {
		p := byID[r.Package.ID]
		for _, v := range vulns[r.Package.ID] {
			raw, sev := match.Normalize(v)
			// One finding per CVE the entry names: each is scored,
			// approved and searched on its own.
			for _, id := range match.IDs(v) {
				f := report.Finding{
					ID: id, Package: r.Package.Name, Version: r.Package.Version, FixedIn: v.FixedInVersion,
					Severity: sev.String(), VendorSeverity: raw, Layer: layerID(p.Layer), Description: v.Description,
					Links: splitLinks(v.Links),
				}
				if r.Package.Source != nil {
					f.Source = r.Package.Source.Name
				}
				c, ok := cvss[f.ID]
				if !ok {
					c = lookupCVSS(ctx, store, f.ID)
					cvss[f.ID] = c
				}
				f.CVSS = c
				if sev == scoring.Unknown && c == nil {
					// Neither the vendor nor NVD rates it: what the other
					// trackers in the database say (Alpine rates nothing).
					if other, from := otherRating(store, f.ID, vulnstore.Family(v.Updater)); other != claircore.Unknown {
						f.Severity, f.SeveritySource = match.FromClaircore(other).String(), from
					}
				}
				rep.Findings = append(rep.Findings, f)
			}
		}
	}
	for _, f := range rep.Findings {
		if f.Severity == scoring.Unknown.String() && f.CVSS == nil {
			rep.Coverage.UnknownSeverity++
		}
	}
	sort.Slice(rep.Findings, func(i, j int) bool {
		a, b := rep.Findings[i], rep.Findings[j]
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Package < b.Package
	})
	sort.Slice(rep.Packages, func(i, j int) bool { return rep.Packages[i].Name < rep.Packages[j].Name })
	return rep, nil
}

// otherRating is the highest severity another tracker than own gives cve,
// and which tracker gives it.
func otherRating(store *vulnstore.Store, cve, own string) (claircore.Severity, string) {
	best, from := claircore.Unknown, ""
	for fam, sev := range store.Ratings(cve) {
		if fam != own && (sev > best || sev == best && fam < from) {
			best, from = sev, fam
		}
	}
	return best, from
}

func lookupCVSS(ctx context.Context, store *vulnstore.Store, id string) *report.CVSS {
	recs, err := store.GetEnrichment(ctx, updater.CVSSSet, []string{id})
	if err != nil || len(recs) == 0 {
		return nil
	}
	c, ok := match.ParseCVSS(recs[0].Enrichment)
	if !ok {
		return nil
	}
	return &report.CVSS{Score: c.Score, Severity: c.Severity.String(), Vector: c.Vector}
}

func distName(d *claircore.Distribution) string {
	switch {
	case d.PrettyName != "":
		return d.PrettyName
	case d.Name != "":
		return d.Name + " " + d.VersionID
	}
	return d.DID + " " + d.VersionID
}

func splitLinks(s string) []string { return strings.Fields(s) }
