package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// spool keeps the records syslog has not received yet in a file, so that
// a plugin that is killed (kill -9, the OOM killer, a power cut after the
// page cache was written) loses none of them. Each record is appended as
// a JSON line before it is queued; the offset up to which records were
// delivered is saved beside it (PATH.pos). At start, the records past
// that offset are delivered first.
//
// Delivery is at least once: the offset is saved at most once a second
// while records flow, and at once whenever the queue drains, so after a
// crash up to a second of delivered records may be sent again.
type spool struct {
	mu    sync.Mutex
	f     *os.File
	path  string
	end   int64 // bytes appended
	mark  int64 // records before this offset were delivered
	saved time.Time
}

// compactAt is the spool size past which a drained spool is emptied.
const compactAt = 1 << 20

// maxReplay bounds what one start replays (a spool grows only while
// syslog is down, by a few hundred bytes a record).
const maxReplay = 256 << 20

// spooled is a queued record and the spool offset just past it (0 when
// it could not be spooled).
type spooled struct {
	r   Record
	end int64
}

// openSpool opens (or creates) the spool at path and returns the records
// that were never delivered.
func openSpool(path string) (*spool, []spooled, []string, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open audit spool %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, nil, fmt.Errorf("audit spool %s: %w", path, err)
	}
	s := &spool{f: f, path: path, end: st.Size()}
	if b, err := os.ReadFile(path + ".pos"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n >= 0 && n <= s.end {
			s.mark = n
		}
	}
	var pending []spooled
	var problems []string
	if s.end-s.mark > maxReplay {
		problems = append(problems, fmt.Sprintf("audit spool %s holds %d undelivered bytes, more than the %d replayed; the oldest are skipped", path, s.end-s.mark, maxReplay))
		s.mark = s.end - maxReplay
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, s.mark, s.end-s.mark), 64<<10)
	off := s.mark
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			off += int64(len(line))
			var rec Record
			if jerr := json.Unmarshal(bytes.TrimSpace(line), &rec); jerr != nil {
				problems = append(problems, fmt.Sprintf("audit spool %s: an unreadable record at offset %d is skipped: %v", path, off-int64(len(line)), jerr))
			} else {
				pending = append(pending, spooled{r: rec, end: off})
			}
		} else if len(line) > 0 {
			// A write cut short by the kill: never a whole record.
			problems = append(problems, fmt.Sprintf("audit spool %s: a partial last record (%d bytes) is skipped", path, len(line)))
		}
		if err != nil {
			break
		}
	}
	return s, pending, problems, nil
}

// append writes r and returns the offset just past it.
func (s *spool) append(r Record) (int64, error) {
	line, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	line = append(line, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.Write(line); err != nil {
		return 0, fmt.Errorf("append to audit spool %s: %w", s.path, err)
	}
	s.end += int64(len(line))
	return s.end, nil
}

// delivered notes that every record up to end reached syslog. idle says
// the queue is empty: the offset is saved at once, and a large spool
// whose every record was delivered is emptied.
func (s *spool) delivered(end int64, idle bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if end > s.mark {
		s.mark = end
	}
	if idle && s.mark == s.end && s.end > compactAt {
		if err := s.f.Truncate(0); err == nil {
			s.end, s.mark = 0, 0
		}
	}
	if !idle && time.Since(s.saved) < time.Second {
		return
	}
	s.saved = time.Now()
	tmp := s.path + ".pos.tmp"
	if os.WriteFile(tmp, []byte(strconv.FormatInt(s.mark, 10)+"\n"), 0o600) == nil {
		os.Rename(tmp, s.path+".pos")
	}
}

func (s *spool) close() error {
	if s == nil {
		return nil
	}
	return errors.Join(s.f.Close())
}
