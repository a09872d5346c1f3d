// Package updater runs claircore's updaters into a vulnstore.Builder: the
// distributions' own trackers in, one consistent database out.
package updater

import (
	"context"
	"fmt"

	"github.com/quay/claircore/alpine"
	"github.com/quay/claircore/aws"
	"github.com/quay/claircore/debian"
	"github.com/quay/claircore/enricher/cvss"
	"github.com/quay/claircore/libvuln/driver"
	"github.com/quay/claircore/oracle"
	"github.com/quay/claircore/photon"
	"github.com/quay/claircore/rhel/vex"
	"github.com/quay/claircore/suse"
	"github.com/quay/claircore/ubuntu"
	"github.com/quay/claircore/updater/osv"
)

// CVSSSet is the name of the NVD CVSS enricher's set.
const CVSSSet = "clair.cvss"

// DefaultSets are claircore's default updater sets, and the NVD CVSS
// enricher, in the order they run.
var DefaultSets = []string{"alpine", "debian", "ubuntu", "rhel-vex", "aws", "oracle", "suse", "photon", "osv", CVSSSet}

// newFactory builds a fresh factory per run, rather than using claircore's
// global registry (updater/defaults), so that runs share no state.
func newFactory(ctx context.Context, name string) (driver.UpdaterSetFactory, error) {
	switch name {
	case "alpine":
		return alpine.NewFactory(ctx)
	case "debian":
		f, err := debian.NewFactory(ctx)
		if err != nil {
			return nil, err
		}
		return debianFactory{f}, nil
	case "ubuntu":
		return ubuntu.NewFactory(ctx)
	case "rhel-vex":
		return new(vex.Factory), nil
	case "aws":
		return driver.UpdaterSetFactoryFunc(aws.UpdaterSet), nil
	case "oracle":
		return driver.UpdaterSetFactoryFunc(oracle.UpdaterSet), nil
	case "photon":
		return driver.UpdaterSetFactoryFunc(photon.UpdaterSet), nil
	case "suse":
		return new(suse.Factory), nil
	case "osv":
		return new(osv.Factory), nil
	case CVSSSet:
		set := driver.NewUpdaterSet()
		if err := set.Add(&cvss.Enricher{}); err != nil {
			return nil, err
		}
		return driver.StaticSet(set), nil
	}
	return nil, fmt.Errorf("unknown updater set %q (want one of %v)", name, DefaultSets)
}
