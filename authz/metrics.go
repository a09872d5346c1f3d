package authz

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the plugin's Prometheus metrics, on a registry of their
// own (no global state).
type Metrics struct {
	Registry    *prometheus.Registry
	decisions   *prometheus.CounterVec
	coverage    *prometheus.CounterVec
	scanSeconds prometheus.Histogram
	cacheHits   prometheus.Counter
	scans       prometheus.Counter
	// pullEvents counts the pull events decided: pulls the gate did not
	// see (a build's base image, a pull while the plugin was down).
	pullEvents prometheus.Counter
	dbAge      prometheus.GaugeFunc
	// runningDenied is what the last review of the running containers
	// left running with an image the policy denies.
	runningDenied prometheus.Gauge
}

// ObserveScan counts one image scan and its duration.
func (m *Metrics) ObserveScan(seconds float64) {
	m.scans.Inc()
	m.scanSeconds.Observe(seconds)
}

// NewMetrics registers the metrics. dbAge reports the database's age in
// seconds (negative when there is none).
func NewMetrics(dbAge func() float64) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "divds", Name: "decisions_total", Help: "Gate decisions by action and answer.",
		}, []string{"action", "decision"}),
		coverage: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "divds", Name: "verdicts_by_coverage_total",
			Help: "Gate decisions with a verdict, by how far the image could be diagnosed (diagnosed, no-data, unknown-distribution, no-packages).",
		}, []string{"coverage"}),
		scanSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "divds", Name: "scan_duration_seconds", Help: "Time to scan an image.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		scans: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "divds", Name: "scans_total", Help: "Images scanned (each image once per database revision).",
		}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "divds", Name: "verdict_cache_hits_total", Help: "Decisions answered from the verdict cache.",
		}),
		pullEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "divds", Name: "pull_events_total",
			Help: "Pull events decided after any gated pull of the same repository had its answer (a build's base images, pulls while the plugin was down, and every gated pull again).",
		}),
		dbAge: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "divds", Name: "database_age_seconds", Help: "Age of the oldest vulnerability data in use; -1 with no database.",
		}, dbAge),
		runningDenied: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "divds", Name: "running_denied_containers",
			Help: "Running containers whose image the policy denies, as the last review left them.",
		}),
	}
	m.Registry.MustRegister(m.decisions, m.coverage, m.scanSeconds, m.scans, m.cacheHits, m.pullEvents, m.dbAge, m.runningDenied,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}
