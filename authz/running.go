package authz

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/divds/divds/scoring"
)

// ActRunning names the audit records of a review of running containers;
// no API request has it.
const ActRunning Action = "running"

// Container is a running container, as a review sees it.
type Container struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Image is the reference it was created from (whitelist and override
	// patterns match it); ImageID is what it runs.
	Image   string `json:"image"`
	ImageID string `json:"image_id"`
	// Platform is the platform of the image it runs, when the daemon
	// says (the containerd store: one image ID covers several).
	Platform string `json:"platform,omitempty"`
}

// Flagged is a running container a review found failing and left
// running.
type Flagged struct {
	Container
	Summary string    `json:"summary"`
	At      time.Time `json:"at"`
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
// daemon starts by itself (restart policies, at boot; swarm tasks), nor
// images that a database update or a policy change turned failing after
// they passed. Each container found failing is audited (action running)
// and, with running: stop in mode: enforce, stopped. why names the
// occasion in the records.
func (p *Plugin) ReviewRunning(ctx context.Context, why string) (Review, error) {
	return p.review(ctx, why, nil)
}

// ReviewContainer reviews one container, as ReviewRunning does all: the
// one that just started, so that a start is audited once, not with every
// other running container.
func (p *Plugin) ReviewContainer(ctx context.Context, id, why string) (Review, error) {
	return p.review(ctx, why, []string{id})
}

func (p *Plugin) review(ctx context.Context, why string, ids []string) (Review, error) {
	var r Review
	pol := p.Policy()
	if !pol.Gated(scoring.ActionRun) {
		p.setFlagged(nil, nil)
		return r, nil
	}
	list, err := p.opts.Daemon.RunningContainers(ctx, ids...)
	if err != nil {
		return r, fmt.Errorf("list running containers: %w", err)
	}
	flagged := map[string]Flagged{} // failing and left running
	var unknownErr error
	for _, c := range list {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		start := time.Now()
		r.Checked++
		d := p.judgeImage(ctx, "run", c.Image, p.imageOf(ctx, c.ImageID), c.Platform, acted, pol)
		if d.verdict == nil {
			if r.Unknown++; r.Unknown == 1 {
				unknownErr = d.err
			}
			continue
		}
		if !d.verdict.Exceeded {
			continue
		}
		r.Denied++
		flagged[c.ID] = Flagged{Container: c, Summary: d.verdict.Summary, At: start.UTC()}
		rec := p.record(ctx, ActRunning, "review", start, d)
		rec.Container, rec.Reason, rec.Decision = c.Name, why, "flagged"
		if pol.Running == scoring.RunningStop && d.verdict.Verdict == scoring.Deny {
			if err := p.opts.Daemon.StopContainer(ctx, c.ID); err != nil {
				rec.Decision, rec.Error = "stop-failed", err.Error()
			} else {
				rec.Decision = "stopped"
				delete(flagged, c.ID)
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
	if r.Unknown > 0 {
		// One line, not one per container: with no database yet, every
		// container of a busy host fails alike.
		p.opts.Log.WithError(unknownErr).Warnf("review (%s): the images of %d running containers could not be evaluated; they are left alone", why, r.Unknown)
	}
	p.setFlagged(ids, flagged)
	return r, nil
}

// ContainerDied forgets a container the reviews flagged: it no longer
// runs.
func (p *Plugin) ContainerDied(id string) { p.setFlagged([]string{id}, nil) }

// setFlagged records what a review found: with ids, about those
// containers only; without, about all of them.
func (p *Plugin) setFlagged(ids []string, found map[string]Flagged) {
	p.flaggedMu.Lock()
	defer p.flaggedMu.Unlock()
	if ids == nil || p.flagged == nil {
		p.flagged = map[string]Flagged{}
	}
	for _, id := range ids {
		delete(p.flagged, id)
	}
	maps.Copy(p.flagged, found)
	if p.opts.Metrics != nil {
		p.opts.Metrics.runningDenied.Set(float64(len(p.flagged)))
	}
}

// FlaggedContainers lists the running containers the reviews found
// failing and left running, by name.
func (p *Plugin) FlaggedContainers() []Flagged {
	p.flaggedMu.Lock()
	defer p.flaggedMu.Unlock()
	out := make([]Flagged, 0, len(p.flagged))
	for _, f := range p.flagged {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b Flagged) int { return strings.Compare(a.Name, b.Name) })
	return out
}
