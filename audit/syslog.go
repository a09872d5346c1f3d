package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Facilities by name (RFC 5424, section 6.2.1).
var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// SyslogOptions configure a Syslog auditor. Zero values take defaults.
type SyslogOptions struct {
	// Address is unixgram:///dev/log (the default), unix://PATH,
	// udp://HOST:PORT or tcp://HOST:PORT.
	Address string
	// Facility by name; default authpriv.
	Facility string
	// AppName is the APP-NAME field; default divds-authz.
	AppName string
	// QueueSize bounds the records held while syslog is away; default 10000.
	QueueSize int
	// Log reports delivery problems and drops.
	Log logrus.FieldLogger
	// Spool is a file (in the state directory) that keeps the records
	// not yet delivered across a crash of the plugin; empty: memory only.
	Spool string
}

// Syslog delivers records to syslog from a bounded queue: Record never
// blocks; while syslog is down records wait and are retried, and only
// what does not fit the queue is dropped, counted and logged.
type Syslog struct {
	opts     SyslogOptions
	network  string
	addr     string
	facility int
	host     string
	queue    chan spooled
	spool    *spool
	dropped  atomic.Int64
	sent     atomic.Int64
	done     chan struct{}
	stopOnce sync.Once
	stop     chan struct{}
	// abandoned ends delivery at once, as a kill would (tests).
	abandoned atomic.Bool
}

// ParseAddress splits a syslog address into a network and an address.
func ParseAddress(a string) (network, addr string, err error) {
	if a == "" {
		return "unixgram", "/dev/log", nil
	}
	u, err := url.Parse(a)
	if err != nil {
		return "", "", fmt.Errorf("syslog address %q: %w", a, err)
	}
	switch u.Scheme {
	case "unixgram", "unix":
		p := u.Path
		if p == "" {
			p = u.Opaque
		}
		if p == "" {
			return "", "", fmt.Errorf("syslog address %q has no socket path", a)
		}
		return u.Scheme, p, nil
	case "udp", "tcp":
		if u.Host == "" {
			return "", "", fmt.Errorf("syslog address %q has no host:port", a)
		}
		return u.Scheme, u.Host, nil
	}
	return "", "", fmt.Errorf("syslog address %q: want unixgram://, unix://, udp:// or tcp://", a)
}

// NewSyslog starts the delivery goroutine.
func NewSyslog(opts SyslogOptions) (*Syslog, error) {
	if opts.Facility == "" {
		opts.Facility = "authpriv"
	}
	if opts.AppName == "" {
		opts.AppName = "divds-authz"
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 10000
	}
	if opts.Log == nil {
		opts.Log = logrus.New()
	}
	fac, ok := facilities[opts.Facility]
	if !ok {
		return nil, fmt.Errorf("unknown syslog facility %q", opts.Facility)
	}
	network, addr, err := ParseAddress(opts.Address)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "-"
	}
	var sp *spool
	var pending []spooled
	if opts.Spool != "" {
		var problems []string
		if sp, pending, problems, err = openSpool(opts.Spool); err != nil {
			return nil, err
		}
		for _, p := range problems {
			opts.Log.Warn(p)
		}
		if len(pending) > 0 {
			opts.Log.WithField("records", len(pending)).Warn("audit: delivering records that a previous run queued and never delivered")
		}
	}
	s := &Syslog{
		opts: opts, network: network, addr: addr, facility: fac, host: host, spool: sp,
		queue: make(chan spooled, opts.QueueSize+len(pending)), done: make(chan struct{}), stop: make(chan struct{}),
	}
	for _, p := range pending {
		s.queue <- p
	}
	go s.run()
	return s, nil
}

// Record implements Auditor; it never blocks.
func (s *Syslog) Record(r Record) {
	item := spooled{r: r}
	if s.spool != nil {
		end, err := s.spool.append(r)
		if err != nil {
			s.opts.Log.WithError(err).Error("audit: record not spooled; it is lost if the plugin dies before syslog gets it")
		}
		item.end = end
	}
	select {
	case s.queue <- item:
	default:
		n := s.dropped.Add(1)
		s.opts.Log.WithField("dropped_total", n).Error("audit: syslog queue full; record dropped")
	}
}

// Dropped counts records lost to a full queue.
func (s *Syslog) Dropped() int64 { return s.dropped.Load() }

// Sent counts records delivered.
func (s *Syslog) Sent() int64 { return s.sent.Load() }

// Close stops accepting records and delivers the queue, waiting at most
// timeout (for SIGTERM: what is still queued then is reported lost).
func (s *Syslog) Close(timeout time.Duration) error {
	s.stopOnce.Do(func() { close(s.stop) })
	select {
	case <-s.done:
		return s.spool.close()
	case <-time.After(timeout):
		n := len(s.queue)
		if s.spool != nil {
			return fmt.Errorf("audit: %d records still queued for syslog at shutdown; they stay in %s and are delivered at the next start", n, s.spool.path)
		}
		return fmt.Errorf("audit: %d records still queued for syslog at shutdown", n)
	}
}

// Format renders a record as an RFC 5424 message: PRI VERSION TIMESTAMP
// HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG, with the key
// fields as structured data and the whole record as JSON in MSG.
func (s *Syslog) Format(r Record) []byte {
	sev := 4 // warning: a deny, a refused reload, a failing running container
	if r.Decision == "allow" || r.Decision == "reloaded" {
		sev = 6 // informational
	}
	msg, _ := json.Marshal(r)
	sd := fmt.Sprintf(`[divds@32473 action="%s" decision="%s" image="%s" image_id="%s" score="%s" threshold="%s" verdict="%s" mode="%s" request_id="%s"]`,
		sdEscape(r.Action), sdEscape(r.Decision), sdEscape(r.Image), sdEscape(r.ImageID), sdEscape(r.Score),
		sdEscape(r.Threshold), sdEscape(r.Verdict), sdEscape(r.Mode), sdEscape(r.RequestID))
	return []byte(fmt.Sprintf("<%d>1 %s %s %s %d %s %s %s", s.facility*8+sev, r.Time.UTC().Format(time.RFC3339Nano),
		s.host, s.opts.AppName, os.Getpid(), "decision", sd, msg))
}

// sdEscape escapes a structured-data parameter value (RFC 5424, 6.3.3).
func sdEscape(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(v)
}

func (s *Syslog) run() {
	defer close(s.done)
	var conn net.Conn
	backoff := 100 * time.Millisecond
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		var item spooled
		select {
		case item = <-s.queue:
		case <-s.stop:
			// Deliver what is queued, then end.
			select {
			case item = <-s.queue:
			default:
				return
			}
		}
		msg := s.Format(item.r)
		for {
			if s.abandoned.Load() {
				return
			}
			var err error
			if conn == nil {
				conn, err = net.DialTimeout(s.network, s.addr, 2*time.Second)
			}
			if err == nil {
				err = s.write(conn, msg)
			}
			if err == nil {
				s.sent.Add(1)
				if s.spool != nil && item.end > 0 {
					s.spool.delivered(item.end, len(s.queue) == 0)
				}
				backoff = 100 * time.Millisecond
				break
			}
			if conn != nil {
				conn.Close()
				conn = nil
			}
			s.opts.Log.WithError(err).Warnf("audit: syslog %s://%s unreachable; %d records queued; retrying", s.network, s.addr, len(s.queue)+1)
			select {
			case <-time.After(backoff):
			case <-s.stop:
				// Keep retrying until Close's timeout gives up on us.
				time.Sleep(backoff)
			}
			backoff = min(backoff*2, 5*time.Second)
		}
	}
}

func (s *Syslog) write(conn net.Conn, msg []byte) error {
	conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if s.network == "tcp" || s.network == "unix" {
		// Octet counting (RFC 6587): the message may hold newlines.
		_, err := fmt.Fprintf(conn, "%d %s", len(msg), msg)
		return err
	}
	_, err := conn.Write(msg)
	return err
}

// JSON writes each record as a JSON line (to stderr, for the journal).
// Record only queues: a stalled journal must not stall docker calls. What
// does not fit the queue is dropped and counted.
type JSON struct {
	queue   chan Record
	done    chan struct{}
	dropped atomic.Int64
}

// NewJSON starts a JSON-lines auditor writing to w.
func NewJSON(w io.Writer) *JSON {
	j := &JSON{queue: make(chan Record, 1024), done: make(chan struct{})}
	go func() {
		defer close(j.done)
		enc := json.NewEncoder(w)
		for r := range j.queue {
			enc.Encode(struct {
				Audit Record `json:"audit"`
			}{r})
		}
	}()
	return j
}

// Record implements Auditor; it never blocks.
func (j *JSON) Record(r Record) {
	select {
	case j.queue <- r:
	default:
		j.dropped.Add(1)
	}
}

// Dropped counts records lost to a full queue.
func (j *JSON) Dropped() int64 { return j.dropped.Load() }

// Close writes what is queued, waiting at most timeout. No Record may
// follow.
func (j *JSON) Close(timeout time.Duration) error {
	close(j.queue)
	select {
	case <-j.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("audit: JSON copies still queued at shutdown")
	}
}
