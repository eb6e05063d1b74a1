package projection

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestChildProjector is the projector process TestProjectorCrashMidway kills.
// It only runs as that helper (it needs the variables below).
func TestChildProjector(t *testing.T) {
	brokers, dir := os.Getenv("KCQRS_PROJ_CHILD_BROKERS"), os.Getenv("KCQRS_PROJ_CHILD_STATE")
	if brokers == "" {
		t.Skip("helper process of TestProjectorCrashMidway")
	}
	p, err := New(Config{Brokers: strings.Split(brokers, ","), StateDir: dir, Registry: testRegistry(t),
		Logger: testLogger(), CommitInterval: 20 * time.Millisecond, SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Run(context.Background()) // until killed
}

// TestProjectorCrashMidway kills a projector process (SIGKILL: no clean
// shutdown, no final commit, Pebble not closed) while it works through a
// backlog, restarts it on the same state directory, and checks that every
// read model equals the fold of the events topic: what was applied before
// the crash and comes again is recognized by its version.
func TestProjectorCrashMidway(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second process")
	}
	e := newEnv(t)
	recs, _ := e.workloadRecords(3, 100, 30, "acc-")
	n := len(recs)
	// The first quarter is a backlog; the rest arrives while the child runs,
	// so it is killed in the middle of the stream.
	e.produce(recs[:n/4]...)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProjector$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KCQRS_PROJ_CHILD_BROKERS="+strings.Join(e.brokers, ","), "KCQRS_PROJ_CHILD_STATE="+dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	names := Names{}.withDefaults()
	var atKill Progress
	eventually(t, "child projector committed part of the backlog", func() (bool, string) {
		pr, err := VersionProgress(context.Background(), e.adm, names, "events")
		if err != nil {
			return false, err.Error()
		}
		atKill = pr
		ps := pr.Groups[string(names.AccountsGroup())]
		var done int64
		for _, p := range ps {
			done += p.Position() - p.Start
		}
		return done > 0, "nothing committed yet"
	})
	rest := recs[n/4:]
	for i := 0; i < len(rest)/2; i += 50 {
		e.produce(rest[i:min(i+50, len(rest)/2)]...)
	}
	if pr, err := VersionProgress(context.Background(), e.adm, names, "events"); err == nil {
		atKill = pr
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	killed = true
	var done, total int64
	for _, p := range atKill.Groups[string(names.AccountsGroup())] {
		done, total = done+p.Position()-p.Start, total+p.End-p.Start
	}
	t.Logf("killed the projector with %d of %d events committed", done, total)

	e.produce(rest[len(rest)/2:]...)
	restart := time.Now()
	cfg := e.config(dir, 1)
	cfg.SessionTimeout = 6 * time.Second // the broker's minimum: the dead member is given up sooner
	p := e.startProjector(cfg)
	s := e.startServer(t.TempDir(), 1)
	f := foldTopic(t, e.brokers, n)
	eventually(t, "read models equal the fold after the crash", func() (bool, string) { return f.matches(s.Handler()) })
	t.Logf("restart to read models complete: %v", time.Since(restart).Round(10*time.Millisecond))
	if st := p.Stats(); st.Gaps != 0 {
		t.Fatalf("a crash must not look like a gap: %+v", st)
	}
	t.Logf("after restart: %+v", p.Stats())
}
