package vulnstore

import (
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/quay/claircore"
	bolt "go.etcd.io/bbolt"
)

// bucketRatings maps a CVE to the severity each distribution's tracker
// gives it: "ubuntu:3,debian:2" (claircore.Severity values). A finding
// whose own tracker rates nothing (Alpine's secdb rates nothing at all)
// can then weigh what the other trackers in the database say. A database
// written before the bucket existed simply has no ratings.
var bucketRatings = []byte("ratings")

var cveInName = regexp.MustCompile(`CVE-\d{4}-\d{4,}`)

// Family names a tracker by its updater's name: "ubuntu/updater/bionic"
// and "alpine-main-v3.7-updater" are "ubuntu" and "alpine".
func Family(updater string) string {
	if i := strings.IndexAny(updater, "/-"); i > 0 {
		return updater[:i]
	}
	return updater
}

// noteRating records what rec's tracker says of the CVEs it names.
func (b *Builder) noteRating(rec *record, updater string) {
	if rec.NormSeverity == uint8(claircore.Unknown) {
		return
	}
	fam := Family(updater)
	for _, text := range []string{rec.Name, rec.SelfName} {
		for _, cve := range cveInName.FindAllString(text, -1) {
			m := b.ratings[cve]
			if m == nil {
				m = map[string]uint8{}
				b.ratings[cve] = m
			}
			m[fam] = max(m[fam], rec.NormSeverity)
		}
	}
}

// writeRatings stores the ratings, in key order.
func (b *Builder) writeRatings() error {
	cves := make([]string, 0, len(b.ratings))
	for c := range b.ratings {
		cves = append(cves, c)
	}
	slices.Sort(cves)
	for _, c := range cves {
		fams := make([]string, 0, len(b.ratings[c]))
		for f := range b.ratings[c] {
			fams = append(fams, f)
		}
		slices.Sort(fams)
		var v []byte
		for i, f := range fams {
			if i > 0 {
				v = append(v, ',')
			}
			v = append(append(append(v, f...), ':'), strconv.Itoa(int(b.ratings[c][f]))...)
		}
		if err := b.put(bucketRatings, []byte(c), v); err != nil {
			return err
		}
	}
	return nil
}

// Ratings returns the severity each tracker in the database gives cve,
// by family (nil when none rates it).
func (s *Store) Ratings(cve string) map[string]claircore.Severity {
	var out map[string]claircore.Severity
	s.view(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketRatings)
		if bk == nil {
			return nil
		}
		for _, part := range strings.Split(string(bk.Get([]byte(cve))), ",") {
			fam, sev, ok := strings.Cut(part, ":")
			n, err := strconv.Atoi(sev)
			if !ok || err != nil || n < 0 || n > int(claircore.Critical) {
				continue
			}
			if out == nil {
				out = map[string]claircore.Severity{}
			}
			out[fam] = claircore.Severity(n)
		}
		return nil
	})
	return out
}
