// Package sample builds the small offline sample database that ships in
// the binary, for `make demo` and for a first start with no network.
//
// The data are real feed files, copied from the distributions' trackers
// into data/ and laid out as an offline mirror (see package mirror): the
// Alpine secdb for v3.3 to v3.11 (last changed 2020-06) and Canonical's
// CVE OVAL for Ubuntu 18.04 (2021-08-31). They are old on purpose: small
// and fixed. A database built from them is always labelled as sample
// data, and says nothing about an image's real exposure today.
package sample

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/divds/divds/scanner/mirror"
	"github.com/divds/divds/scanner/updater"
	"github.com/divds/divds/scanner/vulnstore"
)

//go:embed data
var data embed.FS

// Sets are the updater sets the sample data answers.
var Sets = []string{"alpine", "ubuntu"}

// FS is the sample mirror.
func FS() fs.FS {
	sub, err := fs.Sub(data, "data")
	if err != nil {
		panic(err) // the embedded tree always has data/
	}
	return sub
}

// Build writes the sample database into stateDir, replacing any database
// there, and labels it as sample data.
func Build(ctx context.Context, stateDir string) (vulnstore.Meta, updater.Summary, error) {
	b, err := vulnstore.Begin(ctx, stateDir, vulnstore.BuildOptions{Sample: true})
	if err != nil {
		return vulnstore.Meta{}, updater.Summary{}, err
	}
	defer b.Abort()
	sum, err := updater.Run(ctx, b, updater.Options{Sets: Sets, Client: mirror.New(FS()).Client()})
	if err != nil {
		return vulnstore.Meta{}, sum, fmt.Errorf("build sample database: %w", err)
	}
	if sum.Failed() > 0 {
		return vulnstore.Meta{}, sum, fmt.Errorf("build sample database: %d updaters failed", sum.Failed())
	}
	meta, err := b.Commit(ctx)
	return meta, sum, err
}
