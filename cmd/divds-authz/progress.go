package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/divds/divds/scanner/updater"
)

// progress shows a database update as it runs: on a terminal, a line per
// finished updater and a live line for those still running; otherwise
// one log line per updater, which suits journald and CI logs.
type progress struct {
	w   io.Writer
	log logrus.FieldLogger
	tty bool

	mu       sync.Mutex
	running  map[string]time.Time
	finished int
	failed   int
	stop     chan struct{}
	wg       sync.WaitGroup
}

func newProgress(w io.Writer, log logrus.FieldLogger, tty bool) *progress {
	p := &progress{w: w, log: log, tty: tty, running: map[string]time.Time{}, stop: make(chan struct{})}
	if tty {
		p.wg.Add(1)
		go p.tick()
	}
	return p
}

func (p *progress) event(e updater.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name := e.Updater
	if name == "" {
		name = e.Set
	}
	if e.Status == updater.Running {
		p.running[name] = time.Now()
		if !p.tty {
			p.log.WithField("updater", name).Debug("update started")
		}
		return
	}
	delete(p.running, name)
	p.finished++
	if e.Status == updater.Failed {
		p.failed++
	}
	if !p.tty {
		entry := p.log.WithFields(logrus.Fields{"updater": name, "set": e.Set, "status": e.Status, "records": e.Records, "duration": e.Duration.Round(time.Millisecond)})
		if e.Err != nil {
			entry.WithError(e.Err).Warn("update failed; previous data kept")
		} else {
			entry.Info("update finished")
		}
		return
	}
	mark := "\x1b[32m✓\x1b[0m"
	switch e.Status {
	case updater.Failed:
		mark = "\x1b[31m✗\x1b[0m"
	case updater.Unchanged:
		mark = "="
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s %-40s %-9s %8d records  %s\n", mark, name, e.Status, e.Records, e.Duration.Round(time.Millisecond))
	p.drawLocked()
}

// drawLocked redraws the live line: a bar of finished updaters and the
// ones still running with their elapsed time.
func (p *progress) drawLocked() {
	names := make([]string, 0, len(p.running))
	for n := range p.running {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %s", n, time.Since(p.running[n]).Round(time.Second)))
	}
	line := fmt.Sprintf("[%d done, %d failed] %s", p.finished, p.failed, strings.Join(parts, ", "))
	if len(line) > 120 {
		line = line[:117] + "..."
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
}

func (p *progress) tick() {
	defer p.wg.Done()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.drawLocked()
			p.mu.Unlock()
		}
	}
}

// close ends the live line.
func (p *progress) close() {
	close(p.stop)
	p.wg.Wait()
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
