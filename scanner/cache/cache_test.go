package cache

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/divds/divds/scanner/layerfs"
)

func TestEvictsOldestPastBudget(t *testing.T) {
	c, err := Open(t.TempDir(), time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetMaxBytes(64 << 10)
	put := func(i int) {
		fs := layerfs.NewFileSet()
		fs.Entries["var/lib/dpkg/status"] = layerfs.Entry{Kind: layerfs.File, Data: []byte(strings.Repeat("x", 8<<10))}
		c.PutLayer(fmt.Sprintf("sha256:%d", i), fs)
	}
	for i := 0; i < 20; i++ {
		put(i)
	}
	if c.Layer("sha256:0") != nil {
		t.Fatal("the oldest entry survived past the budget")
	}
	if c.Layer("sha256:19") == nil {
		t.Fatal("the newest entry was evicted")
	}
	// Replacing an entry does not count its bytes twice.
	for i := 0; i < 50; i++ {
		put(19)
	}
	if c.Layer("sha256:18") == nil {
		t.Fatal("rewriting one entry evicted others")
	}
}
