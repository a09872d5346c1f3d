package updater

import (
	"context"
	"math/rand/v2"
	"time"
)

// BackgroundOptions configure Background. Zero values take the defaults.
type BackgroundOptions struct {
	// Interval between successful updates. Default 6h.
	Interval time.Duration
	// Jitter spreads updates by up to this fraction of Interval, so a
	// fleet of hosts does not hit the trackers at once. Default 0.1.
	Jitter float64
	// MinBackoff is the first wait after a failure; it doubles on each
	// failure up to Interval. Default 1m.
	MinBackoff time.Duration
	// Initial runs an update at once instead of after the first interval.
	Initial bool
	// Update runs one update and swaps the result in (the caller's
	// Builder, Run, Commit and Handle.Reload). Required.
	Update func(ctx context.Context) error
	// OnError is told of each failure, with the wait before the retry.
	OnError func(err error, retryIn time.Duration)
}

// Background runs opts.Update on a schedule until ctx ends. It never
// blocks readers: updates write a new database beside the live one.
func Background(ctx context.Context, opts BackgroundOptions) {
	if opts.Interval <= 0 {
		opts.Interval = 6 * time.Hour
	}
	if opts.Jitter == 0 {
		opts.Jitter = 0.1
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Minute
	}
	jitter := func(d time.Duration) time.Duration {
		return d + time.Duration(rand.Float64()*opts.Jitter*float64(d))
	}
	wait := jitter(opts.Interval)
	if opts.Initial {
		wait = 0
	}
	backoff := opts.MinBackoff
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := opts.Update(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			wait = min(jitter(backoff), opts.Interval)
			backoff = min(backoff*2, opts.Interval)
			if opts.OnError != nil {
				opts.OnError(err, wait)
			}
			continue
		}
		backoff = opts.MinBackoff
		wait = jitter(opts.Interval)
	}
}
