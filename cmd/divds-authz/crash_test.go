package main

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/scanner/vulnstore"
)

// TestMain lets a test run this binary as divds-authz: with
// DIVDS_TEST_MAIN=1 it executes the CLI on its arguments after "--".
func TestMain(m *testing.M) {
	if os.Getenv("DIVDS_TEST_MAIN") == "1" {
		args := os.Args[1:]
		for i, a := range args {
			if a == "--" {
				args = args[i+1:]
				break
			}
		}
		os.Exit(execute(context.Background(), args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// cli returns a command running this test binary as divds-authz.
func cli(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "DIVDS_TEST_MAIN=1")
	return cmd
}

// TestKillDuringUpdate kills `db import` with SIGKILL at random points.
// Each time, the database must open, verify, and hold either the old
// content or the new, never a mix.
func TestKillDuringUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("kills 20 imports; skipped with -short")
	}
	state := t.TempDir()
	alpine := testdata.Path(t, "bundles", "alpine-secdb.jsonl.zst")
	bionic := testdata.Path(t, "bundles", "ubuntu-bionic-oval-2021-08-31.jsonl.zst")
	if out, err := cli("--state-dir", state, "db", "import", alpine).CombinedOutput(); err != nil {
		t.Fatalf("initial import: %v\n%s", err, out)
	}
	// How long a whole import takes here: kills fall within it.
	start := time.Now()
	full := t.TempDir()
	if out, err := cli("--state-dir", full, "db", "import", bionic).CombinedOutput(); err != nil {
		t.Fatalf("timing import: %v\n%s", err, out)
	}
	span := time.Since(start)
	// The kill points are random; the seed is logged so that a failure
	// can be replayed with DIVDS_CRASH_SEED.
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DIVDS_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DIVDS_CRASH_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("kill points from seed %d (replay: DIVDS_CRASH_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	completed := 0
	for i := range 20 {
		cmd := cli("--state-dir", state, "db", "import", bionic)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// A few kills land after the import finished: those must show the new content.
		delay := time.Duration(rng.Int64N(int64(span) * 5 / 4))
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if err == nil {
			completed++
		}
		s, err := vulnstore.Open(vulnstore.Path(state))
		if err != nil {
			t.Fatalf("run %d (killed after %s): database does not open: %v", i, delay, err)
		}
		if err := s.Verify(context.Background()); err != nil {
			t.Fatalf("run %d (killed after %s): %v", i, delay, err)
		}
		us, _ := s.Updaters()
		ubuntu := 0
		for _, u := range us {
			if strings.HasPrefix(u.Name, "ubuntu/") {
				ubuntu = u.Records
			}
		}
		if len(us) < 17 || (ubuntu != 0 && ubuntu != 186661) {
			t.Fatalf("run %d (killed after %s): mixed content: %d updaters, %d ubuntu records", i, delay, len(us), ubuntu)
		}
		s.Close()
	}
	t.Logf("20 kills over %s; %d imports completed before the kill", span, completed)
}
