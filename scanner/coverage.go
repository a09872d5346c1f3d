package scanner

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/quay/claircore"

	"github.com/divds/divds/report"
	"github.com/divds/divds/scanner/vulnstore"
	"github.com/divds/divds/scoring"
)

// coverage says whether an image's packages could be matched: a
// distribution must be recognized, and the database must hold data for
// its release. A score of 0 means "nothing known to be vulnerable" only
// then.
func coverage(dist *claircore.Distribution, packages int, updaters []vulnstore.UpdaterInfo) *report.Coverage {
	c := &report.Coverage{}
	switch {
	case packages == 0:
		c.Status, c.Reason = string(scoring.NoPackages), "no package database found (scratch or static image)"
		return c
	case dist == nil || dist.DID == "":
		c.Status = string(scoring.UnknownDistribution)
		c.Reason = fmt.Sprintf("%d packages, but no distribution recognized (no os-release), so nothing to match them against", packages)
		return c
	}
	name := distName(dist)
	want, lacks := dataFor(dist)
	for _, u := range updaters {
		if u.Records > 0 && want(u.Name) {
			c.Data = append(c.Data, u.Name)
		}
	}
	if len(c.Data) == 0 {
		c.Status = string(scoring.NoData)
		c.Reason = fmt.Sprintf("%d packages of %s, and the database holds no data for it: %s", packages, name, lacks)
		return c
	}
	c.Status = string(scoring.Diagnosed)
	c.Reason = fmt.Sprintf("%d packages of %s, matched against %s", packages, name, strings.Join(c.Data, ", "))
	return c
}

// dataFor names the updaters whose data covers a distribution's release,
// and what is missing when none is in the database.
func dataFor(d *claircore.Distribution) (want func(string) bool, lacks string) {
	none := func(string) bool { return false }
	switch d.DID {
	case "alpine":
		// alpine-main-v3.7-updater, alpine-community-v3.7-updater
		v := strings.TrimPrefix(cmp.Or(d.VersionID, d.Version), "v")
		if parts := strings.SplitN(v, ".", 3); len(parts) >= 2 {
			v = parts[0] + "." + parts[1]
		}
		return func(n string) bool {
				return strings.HasPrefix(n, "alpine-") && strings.HasSuffix(n, "-v"+v+"-updater")
			},
			"Alpine's secdb for v" + v + " (db update, or db import of an alpine bundle)"
	case "ubuntu":
		if d.VersionCodeName == "" {
			return none, "the release's code name is not known"
		}
		return func(n string) bool { return n == "ubuntu/updater/"+d.VersionCodeName },
			"Canonical's OVAL for " + d.VersionCodeName + " (db update, or db import of an ubuntu bundle)"
	case "debian":
		// One updater covers every Debian release.
		return func(n string) bool { return n == "debian/updater" },
			"the Debian security tracker (db update, or db import of a debian bundle)"
	case "rhel":
		return func(n string) bool { return strings.HasPrefix(n, "rhel-vex") },
			"Red Hat's VEX data (db update)"
	case "centos", "rocky", "almalinux", "ol", "amzn", "photon", "suse", "sles", "opensuse-leap":
		return none, "DIVDS does not match " + d.DID + " packages yet"
	}
	return none, "no vulnerability data source is known for " + d.DID
}
