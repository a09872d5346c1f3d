// Package match finds the vulnerabilities of indexed packages with
// claircore's matchers over the DIVDS store, and turns them into
// findings with honest severities.
package match

import (
	"context"
	"fmt"

	"github.com/divds/divds/internal/guard"
	"github.com/quay/claircore"
	"github.com/quay/claircore/alpine"
	"github.com/quay/claircore/aws"
	"github.com/quay/claircore/datastore"
	"github.com/quay/claircore/debian"
	"github.com/quay/claircore/libvuln/driver"
	"github.com/quay/claircore/oracle"
	"github.com/quay/claircore/photon"
	"github.com/quay/claircore/suse"
	"github.com/quay/claircore/ubuntu"
)

// Matchers are claircore's OS matchers. (RHEL's needs repository CPEs
// that come from Red Hat's content manifests and a network mapping file;
// see the README's limits.)
func Matchers() []driver.Matcher {
	return []driver.Matcher{
		&alpine.Matcher{}, &aws.Matcher{}, &debian.Matcher{}, &oracle.Matcher{},
		&photon.Matcher{}, &suse.Matcher{}, &ubuntu.Matcher{},
	}
}

// Match is claircore's matching protocol over store, for each matcher:
// the records it is interested in (Filter), a lookup constrained by its
// Query, optional database-side version filtering, and then Vulnerable
// for each candidate unless the matcher trusts the database's filtering.
// The result maps Package.ID to vulnerabilities, each once.
func Match(ctx context.Context, store datastore.Vulnerability, records []*claircore.IndexRecord, matchers []driver.Matcher) (map[string][]*claircore.Vulnerability, error) {
	out := map[string][]*claircore.Vulnerability{}
	seen := map[string]map[string]bool{}
	for _, m := range matchers {
		// A matcher parses versions taken from the image; a panic on one
		// is a failed match, not a crashed plugin.
		err := guard.Run("matcher "+m.Name(), func() error {
			return matchOne(ctx, store, records, m, out, seen)
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// matchOne runs one matcher over records, adding to out what it finds
// that seen does not already hold.
func matchOne(ctx context.Context, store datastore.Vulnerability, records []*claircore.IndexRecord, m driver.Matcher, out map[string][]*claircore.Vulnerability, seen map[string]map[string]bool) error {
	var interested []*claircore.IndexRecord
	for _, r := range records {
		if r.Package == nil || r.Package.NormalizedVersion.Kind == claircore.UnmatchableKind {
			continue
		}
		if m.Filter(r) {
			interested = append(interested, r)
		}
	}
	if len(interested) == 0 {
		return nil
	}
	dbSide, authoritative := false, false
	if vf, ok := m.(driver.VersionFilter); ok {
		dbSide, authoritative = true, vf.VersionAuthoritative()
	}
	got, err := store.Get(ctx, interested, datastore.GetOpts{Matchers: m.Query(), VersionFiltering: dbSide})
	if err != nil {
		return fmt.Errorf("matcher %s: %w", m.Name(), err)
	}
	for _, r := range interested {
		id := r.Package.ID
		for _, v := range got[id] {
			if !authoritative {
				ok, err := vulnerable(ctx, m, r, v)
				if err != nil {
					return fmt.Errorf("matcher %s: %s %s: %w", m.Name(), r.Package.Name, v.Name, err)
				}
				if !ok {
					continue
				}
			}
			if seen[id] == nil {
				seen[id] = map[string]bool{}
			}
			if seen[id][v.ID] {
				continue
			}
			seen[id][v.ID] = true
			out[id] = append(out[id], v)
		}
	}
	return nil
}

// vulnerable is the matcher's Vulnerable, with one correction for the
// trackers whose fixed versions are source package versions (Ubuntu's
// and Debian's): a binary package whose version differs from its
// source's, such as bsdutils 1:2.31.1-0.4ubuntu3 built from util-linux
// 2.31.1-0.4ubuntu3, is compared by its source version too. Compared by
// its own, the epoch makes it newer than any fix ("2.31.1-0.4ubuntu3.3")
// and hides a vulnerable package.
func vulnerable(ctx context.Context, m driver.Matcher, r *claircore.IndexRecord, v *claircore.Vulnerability) (bool, error) {
	ok, err := m.Vulnerable(ctx, r, v)
	if ok || err != nil || !sourceFixes(m) {
		return ok, err
	}
	src := r.Package.Source
	if src == nil || src.Version == "" || src.Version == r.Package.Version {
		return false, nil
	}
	pkg := *r.Package
	pkg.Version = src.Version
	alt := *r
	alt.Package = &pkg
	return m.Vulnerable(ctx, &alt, v)
}

// sourceFixes reports the matchers whose trackers give source versions.
func sourceFixes(m driver.Matcher) bool {
	switch m.(type) {
	case *ubuntu.Matcher, *debian.Matcher:
		return true
	}
	return false
}
