package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Rsyslog is a private rsyslogd: it listens on its own unix datagram
// socket (never /dev/log) and writes every message it receives, raw, to
// a file.
type Rsyslog struct {
	Dir  string
	Sock string
	File string
	Proc *Proc
	t    testing.TB
}

// StartRsyslog starts rsyslogd.
func StartRsyslog(t testing.TB) *Rsyslog {
	t.Helper()
	Require(t, "rsyslogd")
	dir := TempDir(t, "divds-s-")
	r := &Rsyslog{Dir: dir, Sock: filepath.Join(dir, "log.sock"), File: filepath.Join(dir, "audit.log"), t: t}
	os.MkdirAll(filepath.Join(dir, "work"), 0o700)
	cfg := fmt.Sprintf(`global(workDirectory="%s")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="%s" CreatePath="on")
template(name="raw" type="string" string="%%rawmsg%%\n")
*.* action(type="omfile" file="%s" template="raw")
`, filepath.Join(dir, "work"), r.Sock, r.File)
	WriteFile(t, filepath.Join(dir, "rsyslog.conf"), []byte(cfg))
	r.start()
	return r
}

func (r *Rsyslog) start() {
	r.t.Helper()
	os.Remove(r.Sock)
	r.Proc = Start(r.t, "rsyslogd", filepath.Join(r.Dir, "rsyslogd.log"), nil, "rsyslogd", "-n",
		"-f", filepath.Join(r.Dir, "rsyslog.conf"), "-i", filepath.Join(r.Dir, "rsyslogd.pid"))
	WaitFor(r.t, "rsyslogd's socket", 20*time.Second, func() bool {
		if r.Proc.Exited() {
			r.t.Fatalf("rsyslogd exited:\n%s", r.Proc.Tail())
		}
		_, err := os.Stat(r.Sock)
		return err == nil
	})
}

// Restart starts rsyslogd again after Proc.Stop.
func (r *Rsyslog) Restart() { r.start() }

// Lines returns the messages received so far.
func (r *Rsyslog) Lines() []string {
	b, _ := os.ReadFile(r.File)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}
