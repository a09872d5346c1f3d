// Package index finds an image's distribution and installed OS packages,
// each attributed to the layer that introduced it, with claircore's
// package and distribution scanners.
//
// The scanners run on the merged view of the wanted paths (package
// layerfs) after each layer that changed them, not on each layer alone:
// an upper layer that replaces or deletes a package database changes what
// is installed, and the findings must follow the final filesystem. A
// package is attributed to the first layer of its unbroken presence up
// to the top.
package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/quay/claircore"
	"github.com/quay/claircore/alpine"
	"github.com/quay/claircore/apk"
	"github.com/quay/claircore/aws"
	"github.com/quay/claircore/debian"
	"github.com/quay/claircore/dpkg"
	"github.com/quay/claircore/indexer"
	"github.com/quay/claircore/oracle"
	"github.com/quay/claircore/osrelease"
	"github.com/quay/claircore/photon"
	"github.com/quay/claircore/rhel"
	"github.com/quay/claircore/rpm"
	"github.com/quay/claircore/suse"
	"github.com/quay/claircore/ubuntu"

	"github.com/divds/divds/internal/guard"
	"github.com/divds/divds/scanner/layerfs"
)

// Layer is one layer's contribution, bottom first.
type Layer struct {
	DiffID string
	Files  *layerfs.FileSet
}

// Package is an installed package and the index of the layer that
// introduced it.
type Package struct {
	*claircore.Package
	Layer int
}

// Result is an image's index.
type Result struct {
	Distribution *claircore.Distribution
	Packages     []Package
	// Warnings say what could not be read (a refused hardlink, a device
	// where a database should be).
	Warnings []string
}

func packageScanners() []indexer.PackageScanner {
	return []indexer.PackageScanner{&dpkg.Scanner{}, &dpkg.DistrolessScanner{}, &rpm.Scanner{}, &apk.Scanner{}}
}

func distributionScanners() []indexer.DistributionScanner {
	return []indexer.DistributionScanner{
		&alpine.DistributionScanner{}, &ubuntu.DistributionScanner{}, &debian.DistributionScanner{},
		&rhel.DistributionScanner{}, &aws.DistributionScanner{}, &oracle.DistributionScanner{},
		&suse.DistributionScanner{}, &photon.DistributionScanner{},
		// Last: the generic os-release reader, as in claircore's indexer,
		// so that an image of a distribution no matcher covers (CentOS)
		// still says what it is.
		&osrelease.Scanner{},
	}
}

// ScannerVersions names every scanner and its version, with the layerfs
// extraction version: cached results of other versions are not reused.
func ScannerVersions() string {
	var parts []string
	for _, s := range packageScanners() {
		parts = append(parts, s.Name()+"@"+s.Version())
	}
	for _, s := range distributionScanners() {
		parts = append(parts, s.Name()+"@"+s.Version())
	}
	parts = append(parts, "layerfs@"+layerfs.Version)
	return strings.Join(parts, ",")
}

// snapshot is the scanners' input after one layer.
type snapshot struct {
	layer  int
	tar    []byte
	digest string
}

// MaxPackages bounds the packages of one image's databases: each costs a
// lookup and memory, and a database with more is hostile, not real.
const MaxPackages = 100_000

// Index runs the scanners over the layers.
func Index(ctx context.Context, layers []Layer) (*Result, error) {
	if len(layers) == 0 {
		return nil, errors.New("image has no layers")
	}
	res := &Result{}
	view := layerfs.NewView()
	var snaps []snapshot
	for i, l := range layers {
		if l.Files == nil {
			return nil, fmt.Errorf("layer %d (%s) was not read", i, l.DiffID)
		}
		for _, s := range l.Files.Skipped {
			res.Warnings = append(res.Warnings, fmt.Sprintf("layer %d: %s", i+1, s))
		}
		if l.Files.Empty() && len(snaps) > 0 {
			continue
		}
		view.Apply(l.Files)
		tarball, digest := layerfs.Tar(view.Files())
		if len(snaps) > 0 && snaps[len(snaps)-1].digest == digest {
			continue
		}
		snaps = append(snaps, snapshot{layer: i, tar: tarball, digest: digest})
	}
	sets := make([][]*claircore.Package, len(snaps))
	for i, s := range snaps {
		pkgs, err := scanPackages(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", s.layer+1, layers[s.layer].DiffID, err)
		}
		if len(pkgs) > MaxPackages {
			return nil, fmt.Errorf("layer %d (%s): %d packages, more than the %d allowed (real images have a few thousand)", s.layer+1, layers[s.layer].DiffID, len(pkgs), MaxPackages)
		}
		sets[i] = pkgs
	}
	final := snaps[len(snaps)-1]
	dist, err := scanDistribution(ctx, final)
	if err != nil {
		return nil, err
	}
	res.Distribution = dist
	// Attribution: walk down from the top while the package is present.
	present := make([]map[string]bool, len(sets))
	for i, set := range sets {
		present[i] = map[string]bool{}
		for _, p := range set {
			present[i][identity(p)] = true
		}
	}
	for _, p := range sets[len(sets)-1] {
		first := len(sets) - 1
		for first > 0 && present[first-1][identity(p)] {
			first--
		}
		res.Packages = append(res.Packages, Package{Package: p, Layer: snaps[first].layer})
	}
	hidden := hiddenPackages(view, sets, present)
	for _, h := range hidden {
		res.Packages = append(res.Packages, Package{Package: h.pkg, Layer: snaps[h.from].layer})
	}
	if len(hidden) > 0 {
		names := make([]string, 0, len(hidden))
		for _, h := range hidden {
			names = append(names, h.pkg.Name)
		}
		res.Warnings = append(res.Warnings, fmt.Sprintf(
			"layer %d: the package database no longer lists %d packages whose dpkg file lists (and so their files) remain: counted as installed: %s",
			snaps[hidden[0].hiddenAt].layer+1, len(hidden), strings.Join(names, ", ")))
	}
	return res, nil
}

// hidden is a dpkg package that an earlier layer's database lists and the
// final one does not, while its file list is still in the image.
type hidden struct {
	pkg      *claircore.Package
	from     int // the snapshot that brought it
	hiddenAt int // the first snapshot that no longer lists it
}

// hiddenPackages finds the packages a later layer dropped from dpkg's
// database while their files stayed: "FROM <image>" and a COPY of an
// empty /var/lib/dpkg/status keeps every file of the image and would
// score 0. A package removed by dpkg loses its file list too, and is not
// counted.
func hiddenPackages(view *layerfs.View, sets [][]*claircore.Package, present []map[string]bool) []hidden {
	last := len(sets) - 1
	listed := map[string]bool{}
	for _, p := range sets[last] {
		listed[p.Name] = true
	}
	var out []hidden
	seen := map[string]bool{}
	// The latest listing of a package is the version that was installed.
	for k := last - 1; k >= 0; k-- {
		for _, p := range sets[k] {
			if !strings.Contains(p.PackageDB, "dpkg") || listed[p.Name] || seen[p.Name] {
				continue
			}
			seen[p.Name] = true
			if !view.HasFile("var/lib/dpkg/info/"+p.Name+".list") && !view.HasFile("var/lib/dpkg/info/"+p.Name+":"+p.Arch+".list") {
				continue
			}
			from := k
			for from > 0 && present[from-1][identity(p)] {
				from--
			}
			out = append(out, hidden{pkg: p, from: from, hiddenAt: k + 1})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pkg.Name < out[j].pkg.Name })
	return out
}

func identity(p *claircore.Package) string {
	src := ""
	if p.Source != nil {
		src = p.Source.Name + "=" + p.Source.Version
	}
	return strings.Join([]string{p.Name, p.Version, p.Arch, p.Kind.String(), p.PackageDB, src}, "\x00")
}

func withLayer(ctx context.Context, s snapshot, fn func(*claircore.Layer) error) error {
	var l claircore.Layer
	desc := &claircore.LayerDescription{Digest: s.digest, MediaType: "application/vnd.oci.image.layer.v1.tar"}
	if err := l.Init(ctx, desc, bytes.NewReader(s.tar)); err != nil {
		return fmt.Errorf("prepare scanner input: %w", err)
	}
	err := fn(&l)
	if cerr := l.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close scanner input: %w", cerr)
	}
	return err
}

func scanPackages(ctx context.Context, s snapshot) ([]*claircore.Package, error) {
	var out []*claircore.Package
	err := withLayer(ctx, s, func(l *claircore.Layer) error {
		for _, sc := range packageScanners() {
			var pkgs []*claircore.Package
			err := guard.Run(sc.Name()+" scanner", func() (err error) {
				pkgs, err = sc.Scan(ctx, l)
				return err
			})
			if err != nil {
				return fmt.Errorf("%s scanner: %w", sc.Name(), err)
			}
			out = append(out, pkgs...)
		}
		return nil
	})
	return out, err
}

func scanDistribution(ctx context.Context, s snapshot) (*claircore.Distribution, error) {
	var dist *claircore.Distribution
	err := withLayer(ctx, s, func(l *claircore.Layer) error {
		for _, sc := range distributionScanners() {
			var ds []*claircore.Distribution
			err := guard.Run(sc.Name()+" scanner", func() (err error) {
				ds, err = sc.Scan(ctx, l)
				return err
			})
			if err != nil {
				return fmt.Errorf("%s scanner: %w", sc.Name(), err)
			}
			if len(ds) > 0 {
				dist = ds[0]
				return nil
			}
		}
		return nil
	})
	return dist, err
}
