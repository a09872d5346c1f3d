package audit

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// blockedWriter stands for a journal that stopped reading.
type blockedWriter struct{ release chan struct{} }

func (b blockedWriter) Write(p []byte) (int, error) { <-b.release; return len(p), nil }

func TestJSONNeverBlocks(t *testing.T) {
	w := blockedWriter{release: make(chan struct{})}
	j := NewJSON(w)
	// A Record that blocked would hang the loop, not slow it: the loop
	// runs beside a deadline, so a regression fails instead of hanging.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 5000; i++ {
			j.Record(Record{Action: "create"})
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		close(w.release)
		t.Fatal("Record blocked on a stalled writer")
	}
	if j.Dropped() == 0 {
		t.Fatal("records beyond the queue must be counted as dropped")
	}
	close(w.release)
	if err := j.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }

func TestJSONFlushesOnClose(t *testing.T) {
	var buf syncBuf
	j := NewJSON(&buf)
	for i := 0; i < 10; i++ {
		j.Record(Record{Action: "push", Decision: "deny"})
	}
	if err := j.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.b.String(), `"audit":`); n != 10 {
		t.Fatalf("%d lines, want 10", n)
	}
}

func TestSeverity(t *testing.T) {
	s := &Syslog{facility: 10}
	for decision, want := range map[string]string{
		"allow": "<86>", "reloaded": "<86>",
		"deny": "<84>", "refused": "<84>", "flagged": "<84>", "stopped": "<84>", "stop-failed": "<84>",
	} {
		if got := string(s.Format(Record{Decision: decision})); !strings.HasPrefix(got, want) {
			t.Errorf("%s: %.8s, want %s", decision, got, want)
		}
	}
}

func TestSyslogFormatAndDelivery(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s, err := NewSyslog(SyslogOptions{Address: "unixgram://" + sock})
	if err != nil {
		t.Fatal(err)
	}
	s.Record(Record{Time: time.Unix(0, 0), Action: "push", Decision: "deny", Image: `a"b]`})
	buf := make([]byte, 8192)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	msg := string(buf[:n])
	if !strings.HasPrefix(msg, "<84>1 1970-01-01T00:00:00Z ") || !strings.Contains(msg, `image="a\"b\]"`) {
		t.Fatalf("message %q", msg)
	}
	if err := s.Close(time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestParseAddress(t *testing.T) {
	for in, ok := range map[string]bool{"": true, "unixgram:///dev/log": true, "udp://127.0.0.1:514": true, "tcp://h:6514": true, "udp://": false, "http://x": false, "unix://": false} {
		if _, _, err := ParseAddress(in); (err == nil) != ok {
			t.Errorf("%q: %v", in, err)
		}
	}
}
