// Package testdb builds vulnerability databases from the Clair
// bundles for tests and benchmarks.
package testdb

import (
	"context"
	"os"
	"testing"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/scanner/bundle"
	"github.com/divds/divds/scanner/vulnstore"
)

// Import imports the named bundles of testdata/bundles into
// the state directory dir, one update each.
func Import(tb testing.TB, dir string, bundles ...string) {
	tb.Helper()
	ctx := context.Background()
	for _, name := range bundles {
		f, err := os.Open(testdata.Path(tb, "bundles", name))
		if err != nil {
			tb.Fatal(err)
		}
		b, err := vulnstore.Begin(ctx, dir, vulnstore.BuildOptions{})
		if err != nil {
			f.Close()
			tb.Fatal(err)
		}
		_, err = bundle.Import(ctx, b, f, bundle.Options{})
		f.Close()
		if err == nil {
			_, err = b.Commit(ctx)
		}
		b.Abort()
		if err != nil {
			tb.Fatalf("import %s: %v", name, err)
		}
	}
}
