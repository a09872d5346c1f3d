package audit

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
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

// TestSpoolSurvivesAKill: records queued while syslog is down outlive
// the process (20 of 20 were lost to a kill -9 before the spool); the
// next start delivers them, once each.
func TestSpoolSurvivesAKill(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "log.sock")
	spool := filepath.Join(dir, "audit.spool")
	opts := SyslogOptions{Address: "unixgram://" + sock, Spool: spool}
	// syslog is down: nothing listens on the socket yet.
	s, err := NewSyslog(opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		s.Record(Record{Action: "create", Decision: "deny", RequestID: fmt.Sprint(i)})
	}
	s.abandoned.Store(true) // killed: no flush, no Close
	// A record cut short by the kill, after the whole ones.
	f, _ := os.OpenFile(spool, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"action":"crea`)
	f.Close()

	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s2, err := NewSyslog(opts)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	buf := make([]byte, 8192)
	for len(got) < 20 {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("%d of 20 records after the restart: %v", len(got), err)
		}
		m := regexp.MustCompile(`request_id="(\d+)"`).FindStringSubmatch(string(buf[:n]))
		if m == nil {
			t.Fatalf("record %q", buf[:n])
		}
		got[m[1]]++
	}
	if err := s2.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	// Delivered records are not replayed by the next start.
	s3, err := NewSyslog(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close(time.Second)
	conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("a delivered record came again: %q", buf[:n])
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("record %s delivered %d times", id, n)
		}
	}
}
