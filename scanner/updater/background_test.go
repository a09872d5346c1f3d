package updater

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestBackgroundBacksOffAndRecovers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu    sync.Mutex
		calls int
		waits []time.Duration
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Background(ctx, BackgroundOptions{
			Interval: 40 * time.Millisecond, MinBackoff: 5 * time.Millisecond, Jitter: 0.01, Initial: true,
			Update: func(context.Context) error {
				mu.Lock()
				defer mu.Unlock()
				calls++
				switch {
				case calls <= 3:
					return errors.New("network down")
				case calls == 5:
					cancel()
				}
				return nil
			},
			OnError: func(_ error, retry time.Duration) {
				mu.Lock()
				waits = append(waits, retry)
				mu.Unlock()
			},
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Background did not stop when its context ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 5 || len(waits) != 3 {
		t.Fatalf("%d calls, waits %v", calls, waits)
	}
	if !(waits[0] < waits[1] && waits[1] < waits[2]) {
		t.Fatalf("backoff does not grow: %v", waits)
	}
}
