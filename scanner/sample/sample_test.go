package sample

import (
	"context"
	"testing"

	"github.com/divds/divds/scanner/vulnstore"
)

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	meta, sum, err := Build(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if !meta.Sample || meta.Revision != 1 {
		t.Fatalf("meta %+v", meta)
	}
	if len(sum.Results) != 19 { // 18 alpine updaters (v3.3 community is empty) + bionic
		t.Errorf("%d updaters ran: %+v", len(sum.Results), sum.Results)
	}
	s, err := vulnstore.Open(vulnstore.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Meta().Sample {
		t.Fatal("the sample database must be labelled as sample")
	}
}
