package authz

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/divds/divds/scoring"
)

// BenchmarkRunGateCached measures the plugin's decision for a container
// create of an image whose verdict is cached (the daemon's inspect is a
// fake here: this is the time spent inside the plugin). It reports the
// 99th percentile.
func BenchmarkRunGateCached(b *testing.B) {
	var scans atomic.Int32
	p, _ := newPlugin(b, scoring.Default(), images(), fakeDB{}, &scans)
	r := req("POST", "/v1.41/containers/create", `{"Image":"app:vuln","Cmd":["true"]}`)
	p.AuthZReq(r) // warm the cache
	durs := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res := p.AuthZReq(r)
		durs = append(durs, time.Since(start))
		if res.Allow {
			b.Fatal("allowed")
		}
	}
	b.StopTimer()
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds()), "p99-µs")
	if scans.Load() != 1 {
		b.Fatalf("%d scans", scans.Load())
	}
}
