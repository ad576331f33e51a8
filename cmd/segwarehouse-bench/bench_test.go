package main

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses, as a thread may name
	// itself; utime 1200 and stime 34 (fields 14 and 15), starttime 987654
	// (field 22).
	line := "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1200 34 0 0 20 0 9 0 987654 1000000 500 " +
		"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	got, err := parseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if got.comm != "we (ird) name" || got.ppid != 1 || got.cpu != 1234 || got.start != 987654 {
		t.Errorf("parseProcStat = %+v, want comm %q, ppid 1, cpu 1234, start 987654", got, "we (ird) name")
	}
	if _, err := parseProcStat([]byte("4242 (short) S 1 2")); err == nil {
		t.Error("parseProcStat accepted a truncated line")
	}
}

func TestProcessCPUSelf(t *testing.T) {
	if _, err := processCPU(strconv.Itoa(os.Getpid())); err != nil {
		t.Fatal(err)
	}
	if rss, err := peakRSS("self"); err != nil || rss <= 0 {
		t.Fatalf("peakRSS(self) = %d, %v", rss, err)
	}
	if busy, err := machineBusy(); err != nil || busy <= 0 {
		t.Fatalf("machineBusy() = %v, %v", busy, err)
	}
}

func TestCountsFor(t *testing.T) {
	const db = "segwh_bench_a_0011aabb"
	for _, tc := range []struct {
		cmdline string
		want    bool
	}{
		{"/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main -c config_file=x ", true},
		{"postgres: 15/main: checkpointer      ", true},
		{"postgres: 15/main: background writer ", true},
		{"postgres: walwriter ", true},
		{"postgres: 15/main: postgres " + db + " 127.0.0.1(57392) COPY", true},
		{"postgres: postgres " + db + " [local] idle in transaction", true},
		{"postgres: 15/main: autovacuum worker " + db, true},
		{"postgres: 15/main: postgres segwh_test_c2b0a9c4d3d8 127.0.0.1(57392) SELECT", false},
		{"postgres: 15/main: postgres " + db + "_base 127.0.0.1(1) idle", false},
		{"postgres: 15/main: autovacuum worker other", false},
	} {
		if got := countsFor(tc.cmdline, db); got != tc.want {
			t.Errorf("countsFor(%q) = %v, want %v", tc.cmdline, got, tc.want)
		}
	}
}

func TestOffsetsReached(t *testing.T) {
	ends := map[int32]int64{0: 10, 1: 0, 2: 5}
	for _, tc := range []struct {
		st   offsetsState
		want bool
	}{
		{offsetsState{0: 10, 2: 5}, true}, // partition 1 is empty: nothing to wait for
		{offsetsState{0: 10, 1: -1, 2: 5}, true},
		{offsetsState{0: 10, 2: 4}, false},
		{offsetsState{0: 10}, false},
		{offsetsState{}, false},
	} {
		if got := tc.st.reached(ends); got != tc.want {
			t.Errorf("%v.reached(%v) = %v, want %v", tc.st, ends, got, tc.want)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ admin, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=prefer", "postgres://postgres@127.0.0.1:5432/x?sslmode=disable"},
		{"host=/run/postgresql user=postgres", "host=/run/postgresql user=postgres dbname=x sslmode=disable"},
	} {
		got, err := withDatabase(tc.admin, "x")
		if err != nil || got != tc.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tc.admin, got, err, tc.want)
		}
	}
}

func TestProfilePath(t *testing.T) {
	if got := profilePath("/tmp/cpu.prof", "a", false); got != "/tmp/cpu.prof" {
		t.Errorf("one workload: %q", got)
	}
	if got := profilePath("/tmp/cpu.prof", "b", true); got != "/tmp/cpu-b.prof" {
		t.Errorf("several workloads: %q", got)
	}
}

func TestQuickFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-events", "1000", "-workloads", "c,a,c"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if o.events != 1000 || o.backlog != 50_000 || o.duration.Seconds() != 10 {
		t.Errorf("-quick with -events: events %d, backlog %d, duration %s", o.events, o.backlog, o.duration)
	}
	if len(o.workloads) != 2 || o.workloads[0] != "c" || o.workloads[1] != "a" {
		t.Errorf("workloads %v, want [c a]", o.workloads)
	}
	if _, err := parseFlags([]string{"-workloads", "e"}, os.Stderr); err == nil {
		t.Error("an unknown workload was accepted")
	}
	if w := o.workload("a"); !w.baseline || w.names != 50 || w.events != 1000 {
		t.Errorf("workload a = %+v", w)
	}
	if w := o.workload("c"); w.baseline || !w.stream() || w.total() != 50_000 {
		t.Errorf("workload c = %+v", w)
	}
}

// The CPU ceiling: 6 CPU seconds on 2 cores take at least 3 s, so against
// a 1.5 s baseline the ratio is at most 0.5; unknown without a baseline,
// for an in-process loader (its CPU includes the broker's) or without CPU.
func TestCPUCeiling(t *testing.T) {
	r := &result{loader: &loaderRun{loaderCPU: 4, pgCPU: 2}, base: &baselineRun{seconds: 1.5}}
	if got := r.cpuCeiling(2); got != 0.5 {
		t.Fatalf("cpuCeiling(2) = %v, want 0.5", got)
	}
	if got := r.cpuCeiling(4); got != 1 {
		t.Fatalf("cpuCeiling(4) = %v, want 1", got)
	}
	for name, r := range map[string]*result{
		"no baseline": {loader: &loaderRun{loaderCPU: 4, pgCPU: 2}},
		"in process":  {loader: &loaderRun{loaderCPU: 4, pgCPU: 2, inProcess: true}, base: &baselineRun{seconds: 1.5}},
		"no CPU":      {loader: &loaderRun{}, base: &baselineRun{seconds: 1.5}},
	} {
		if got := r.cpuCeiling(2); got != 0 {
			t.Errorf("%s: cpuCeiling = %v, want 0", name, got)
		}
	}
}

// fakeLoader is a runningLoader with set figures.
type fakeLoader struct {
	cpu     float64
	rss     int64
	done    chan struct{}
	stopErr error
	stopped bool
	log     string
}

func (f *fakeLoader) CPU() (float64, error)   { return f.cpu, nil }
func (f *fakeLoader) PeakRSS() (int64, error) { return f.rss, nil }
func (f *fakeLoader) Done() <-chan struct{}   { return f.done }
func (f *fakeLoader) Log() string             { return f.log }
func (f *fakeLoader) Stop() error {
	f.stopped = true
	return f.stopErr
}

// Replicas count as one loader: CPU summed, RSS the largest, done when
// one stops, every one stopped even when one fails to.
func TestReplicaSet(t *testing.T) {
	a := &fakeLoader{cpu: 1.5, rss: 100, done: make(chan struct{}), stopErr: errors.New("would not stop"), log: "log a\n"}
	b := &fakeLoader{cpu: 2.25, rss: 300, done: make(chan struct{}), log: "log b\n"}
	r := newReplicaSet([]runningLoader{a, b})
	if cpu, err := r.CPU(); err != nil || cpu != 3.75 {
		t.Errorf("CPU = %v, %v; want 3.75", cpu, err)
	}
	if rss, err := r.PeakRSS(); err != nil || rss != 300 {
		t.Errorf("PeakRSS = %v, %v; want 300", rss, err)
	}
	select {
	case <-r.Done():
		t.Fatal("done before any replica stopped")
	default:
	}
	close(b.done)
	select {
	case <-r.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("not done after a replica stopped")
	}
	err := r.Stop()
	if !a.stopped || !b.stopped {
		t.Errorf("stopped a %v, b %v; want both", a.stopped, b.stopped)
	}
	if err == nil || !strings.Contains(err.Error(), "replica 1: would not stop") {
		t.Errorf("Stop = %v, want replica 1's error", err)
	}
	if got := r.Log(); !strings.Contains(got, "--- replica 1\nlog a") || !strings.Contains(got, "--- replica 2\nlog b") {
		t.Errorf("Log = %q, want both logs under their numbers", got)
	}
}

func TestParseFlagsReplicas(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"-replicas", "2"}, true},
		{[]string{"-replicas", "0"}, false},
		{[]string{"-replicas", "7"}, false}, // more than the partitions
		{[]string{"-replicas", "2", "-cpuprofile", "x.prof"}, false},
	} {
		o, err := parseFlags(tc.args, io.Discard)
		if (err == nil) != tc.ok {
			t.Errorf("parseFlags(%q): %v, want ok %v", tc.args, err, tc.ok)
		}
		if err == nil && o.replicas != 2 {
			t.Errorf("parseFlags(%q): replicas %d, want 2", tc.args, o.replicas)
		}
	}
}
