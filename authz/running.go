package authz

import (
	"context"
	"fmt"
	"time"

	"github.com/divds/divds/scoring"
)

// ActRunning names the audit records of a review of running containers;
// no API request has it.
const ActRunning Action = "running"

// Container is a running container, as a review sees it.
type Container struct {
	ID   string
	Name string
	// Image is the reference it was created from (whitelist and override
	// patterns match it); ImageID is what it runs.
	Image   string
	ImageID string
}

// Review is what one review of the running containers found.
type Review struct {
	Checked int
	// Denied counts containers whose image the policy denies (or would
	// deny, in mode: audit); Stopped, those of them stopped.
	Denied, Stopped int
	// Unknown counts containers whose image could not be evaluated.
	Unknown int
}

// ReviewRunning checks the image of every running container against the
// policy and database in force. The gates cannot see containers the
// daemon starts by itself (restart policies, at boot), nor images that a
// database update or a policy change turned failing after they passed.
// Each container found failing is audited (action running) and, with
// running: stop in mode: enforce, stopped. why names the occasion in the
// records.
func (p *Plugin) ReviewRunning(ctx context.Context, why string) (Review, error) {
	var r Review
	pol := p.Policy()
	if !pol.Gated(scoring.ActionRun) {
		p.setRunningDenied(0)
		return r, nil
	}
	list, err := p.opts.Daemon.RunningContainers(ctx)
	if err != nil {
		return r, fmt.Errorf("list running containers: %w", err)
	}
	for _, c := range list {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		start := time.Now()
		r.Checked++
		d := p.verdictFor(ctx, "run", c.Image, c.ImageID, pol)
		if d.verdict == nil {
			r.Unknown++
			p.opts.Log.WithError(d.err).WithField("container", c.Name).Warn("review: the image of a running container could not be evaluated")
			continue
		}
		if !d.verdict.Exceeded {
			continue
		}
		r.Denied++
		rec := p.record(ctx, ActRunning, "review", start, d)
		rec.Container, rec.Reason, rec.Decision = c.Name, why, "flagged"
		if pol.Running == scoring.RunningStop && d.verdict.Verdict == scoring.Deny {
			if err := p.opts.Daemon.StopContainer(ctx, c.ID); err != nil {
				rec.Decision, rec.Error = "stop-failed", err.Error()
			} else {
				rec.Decision = "stopped"
				r.Stopped++
			}
		}
		p.opts.Auditor.Record(rec)
		if p.opts.Metrics != nil {
			p.opts.Metrics.decisions.WithLabelValues(string(ActRunning), rec.Decision).Inc()
		}
		p.opts.Log.WithField("container", c.Name).Warnf("review (%s): running container %s of %s: %s; %s",
			why, c.Name, c.Image, d.verdict.Summary, rec.Decision)
	}
	p.setRunningDenied(r.Denied - r.Stopped)
	return r, nil
}

func (p *Plugin) setRunningDenied(n int) {
	if p.opts.Metrics != nil {
		p.opts.Metrics.runningDenied.Set(float64(n))
	}
}
