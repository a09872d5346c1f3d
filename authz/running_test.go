package authz

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/divds/divds/scoring"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestReviewRunning(t *testing.T) {
	containers := []Container{
		{ID: "c1", Name: "web", Image: "app:ok", ImageID: "sha256:ok"},
		{ID: "c2", Name: "legacy", Image: "app:vuln", ImageID: "sha256:vuln"},
		{ID: "unstoppable", Name: "stuck", Image: "app:vuln", ImageID: "sha256:vuln"},
	}
	tests := []struct {
		name      string
		pol       func(*scoring.Policy)
		db        Database
		want      Review
		stopped   []string
		decisions []string // audit decisions, in order
	}{
		{"report", nil, fakeDB{}, Review{Checked: 3, Denied: 2}, nil, []string{"flagged", "flagged"}},
		{"stop", func(p *scoring.Policy) { p.Running = scoring.RunningStop }, fakeDB{},
			Review{Checked: 3, Denied: 2, Stopped: 1}, []string{"c2"}, []string{"stopped", "stop-failed"}},
		{"stop, audit mode", func(p *scoring.Policy) { p.Running, p.Mode = scoring.RunningStop, scoring.ModeAudit }, fakeDB{},
			Review{Checked: 3, Denied: 2}, nil, []string{"flagged", "flagged"}},
		{"approved by a raised threshold", func(p *scoring.Policy) { p.Running, p.Threshold = scoring.RunningStop, 30000 }, fakeDB{},
			Review{Checked: 3}, nil, nil},
		{"run gate off", func(p *scoring.Policy) {
			p.Running, p.Actions = scoring.RunningStop, []scoring.Action{scoring.ActionPull}
		}, fakeDB{},
			Review{}, nil, nil},
		// Without a verdict nothing is stopped, whatever on_error says.
		{"no database", func(p *scoring.Policy) { p.Running = scoring.RunningStop }, fakeDB{err: errors.New("no database")},
			Review{Checked: 3, Unknown: 3}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := scoring.Default()
			if tt.pol != nil {
				tt.pol(pol)
			}
			d := images()
			d.running = containers
			var scans atomic.Int32
			p, rec := newPlugin(t, pol, d, tt.db, &scans)
			got, err := p.ReviewRunning(context.Background(), "test")
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("review %+v, want %+v", got, tt.want)
			}
			if !reflect.DeepEqual(d.stopped, tt.stopped) {
				t.Fatalf("stopped %v, want %v", d.stopped, tt.stopped)
			}
			var decisions []string
			for _, r := range rec.recs {
				if r.Action != string(ActRunning) || r.Phase != "review" || r.Reason != "test" || r.Container == "" || r.Score == "" {
					t.Fatalf("record %+v", r)
				}
				decisions = append(decisions, r.Decision)
			}
			if !reflect.DeepEqual(decisions, tt.decisions) {
				t.Fatalf("audited %v, want %v", decisions, tt.decisions)
			}
		})
	}
	t.Run("daemon unreachable", func(t *testing.T) {
		d := images()
		d.failing = errors.New("connection refused")
		var scans atomic.Int32
		p, _ := newPlugin(t, scoring.Default(), d, fakeDB{}, &scans)
		if _, err := p.ReviewRunning(context.Background(), "test"); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestReviewContainerAndGauge(t *testing.T) {
	d := images()
	d.running = []Container{
		{ID: "c1", Name: "web", Image: "app:ok", ImageID: "sha256:ok"},
		{ID: "c2", Name: "legacy", Image: "app:vuln", ImageID: "sha256:vuln"},
		{ID: "c3", Name: "other", Image: "app:vuln", ImageID: "sha256:vuln"},
	}
	var scans atomic.Int32
	p, rec := newPlugin(t, scoring.Default(), d, fakeDB{}, &scans)
	p.opts.Metrics = NewMetrics(func() float64 { return 0 })
	gauge := func() float64 { return testutil.ToFloat64(p.opts.Metrics.runningDenied) }
	ctx := context.Background()

	steps := []struct {
		name      string
		review    func() (Review, error)
		running   []string // IDs left running before the review
		wantGauge float64
		wantRecs  int // records so far
	}{
		{"full review", func() (Review, error) { return p.ReviewRunning(ctx, "test") }, nil, 2, 2},
		{"a clean container started", func() (Review, error) { return p.ReviewContainer(ctx, "c1", "started") }, nil, 2, 2},
		{"a failing container started", func() (Review, error) { return p.ReviewContainer(ctx, "c2", "started") }, nil, 2, 3},
		{"a failing container is gone", func() (Review, error) { return p.ReviewContainer(ctx, "c2", "started") }, []string{"c1", "c3"}, 1, 3},
		{"a failing container died", func() (Review, error) { p.ContainerDied("c3"); return Review{}, nil }, []string{"c1"}, 0, 3},
	}
	for _, st := range steps {
		if st.running != nil {
			var keep []Container
			for _, c := range d.running {
				if slices.Contains(st.running, c.ID) {
					keep = append(keep, c)
				}
			}
			d.running = keep
		}
		if _, err := st.review(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if g := gauge(); g != st.wantGauge {
			t.Fatalf("%s: gauge %v, want %v", st.name, g, st.wantGauge)
		}
		if len(rec.recs) != st.wantRecs {
			t.Fatalf("%s: %d records, want %d", st.name, len(rec.recs), st.wantRecs)
		}
	}
}
