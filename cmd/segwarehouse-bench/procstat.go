package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc: 100 on every
// Linux kernel this runs on (it is fixed by the kernel ABI, not by HZ).
const clockTicks = 100

// procTimes is what the benchmark reads from /proc/<pid>/stat.
type procTimes struct {
	comm  string // the executable's name, without the parentheses
	ppid  int
	cpu   uint64 // utime + stime, in clock ticks, over all threads
	start uint64 // starttime, in clock ticks after boot: tells a reused pid apart
}

// readProcTimes reads /proc/<pid>/stat ("self" for this process).
func readProcTimes(pid string) (procTimes, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return procTimes{}, err
	}
	return parseProcStat(b)
}

// parseProcStat parses the content of /proc/<pid>/stat. The command name
// is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseProcStat(b []byte) (procTimes, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procTimes{}, fmt.Errorf("parsing /proc stat %.40q: no command name", b)
	}
	// Fields after the name start with field 3 (state); ppid is field 4,
	// utime 14, stime 15 and starttime 22 in proc(5)'s numbering.
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 20 {
		return procTimes{}, fmt.Errorf("parsing /proc stat: %d fields after the command name, want at least 20", len(f))
	}
	var v [4]uint64
	for i, idx := range []int{11, 12, 19, 1} {
		n, err := strconv.ParseUint(f[idx], 10, 64)
		if err != nil {
			return procTimes{}, fmt.Errorf("parsing /proc stat field %d: %w", idx+3, err)
		}
		v[i] = n
	}
	return procTimes{comm: string(b[open+1 : end]), ppid: int(v[3]), cpu: v[0] + v[1], start: v[2]}, nil
}

// processCPU returns the CPU seconds (user + system, all threads) the
// process has used so far.
func processCPU(pid string) (float64, error) {
	t, err := readProcTimes(pid)
	if err != nil {
		return 0, fmt.Errorf("reading the CPU time of process %s: %w", pid, err)
	}
	return float64(t.cpu) / clockTicks, nil
}

// peakRSS returns the process's peak resident set size in bytes (VmHWM).
func peakRSS(pid string) (int64, error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0, fmt.Errorf("reading the peak RSS of process %s: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing VmHWM of process %s: %w", pid, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading the peak RSS of process %s: %w", pid, err)
	}
	return 0, fmt.Errorf("process %s: no VmHWM in /proc/%s/status", pid, pid)
}

// machineBusy returns the CPU seconds all cores have spent busy since boot
// (everything but idle and iowait), from the first line of /proc/stat.
func machineBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("reading /proc/stat: %w", err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("parsing /proc/stat: unexpected first line %q", line)
	}
	var busy uint64
	// user nice system idle iowait irq softirq steal; guest time is
	// already part of user.
	for i, s := range f[1:9] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing /proc/stat: %w", err)
		}
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return float64(busy) / clockTicks, nil
}

// procKey names one process for its whole life: pids are reused.
type procKey struct {
	pid   int
	start uint64
}

// procCPU is one sampled process: whether it counts, and its CPU ticks
// when first and last seen.
type procCPU struct {
	counts      bool
	first, last uint64
}

// pgSampler measures the CPU the Postgres server spends for one database:
// the postmaster, the background processes (checkpointer, walwriter, …)
// and the backends and autovacuum workers of that database. Backends of
// other databases (other people's tests on a shared server) and the
// excluded pids (the benchmark's own monitoring connection) do not count.
//
// Every Snapshot samples the postmasters' children; a process that exits
// between two snapshots keeps the CPU seen at the last one, so frequent
// snapshots lose little, and a process born after the first snapshot
// counts from zero.
type pgSampler struct {
	mu          sync.Mutex
	db          string
	exclude     map[int]bool
	postmasters []int
	procs       map[procKey]*procCPU
	started     bool
}

// newPGSampler returns a sampler of the postgres processes that work for
// database db. Call Snapshot once to start the window.
func newPGSampler(db string, exclude ...int) (*pgSampler, error) {
	s := &pgSampler{db: db, exclude: make(map[int]bool), procs: make(map[procKey]*procCPU)}
	for _, pid := range exclude {
		s.exclude[pid] = true
	}
	pids, err := postgresPIDs()
	if err != nil {
		return nil, err
	}
	for _, pid := range pids {
		if t, err := readProcTimes(strconv.Itoa(pid)); err == nil && !slices.Contains(pids, t.ppid) {
			s.postmasters = append(s.postmasters, pid)
		}
	}
	if len(s.postmasters) == 0 {
		return nil, errors.New("no postgres process in /proc: the benchmark must run on the Postgres server's machine, " +
			"as root or as the postgres user")
	}
	return s, nil
}

// Snapshot samples every postgres process and returns the CPU seconds the
// counted ones have used since the first Snapshot.
func (s *pgSampler) Snapshot() (float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pids, err := s.pids()
	if err != nil {
		return 0, err
	}
	for _, pid := range pids {
		if s.exclude[pid] {
			continue
		}
		t, err := readProcTimes(strconv.Itoa(pid))
		if err != nil || t.comm != "postgres" {
			continue // gone already
		}
		k := procKey{pid, t.start}
		p := s.procs[k]
		if p == nil {
			p = &procCPU{counts: s.counts(pid)}
			if !s.started {
				p.first = t.cpu // only what it uses from now on counts
			}
			s.procs[k] = p
		}
		p.last = t.cpu
	}
	s.started = true
	var ticks uint64
	for _, p := range s.procs {
		if p.counts {
			ticks += p.last - p.first
		}
	}
	return float64(ticks) / clockTicks, nil
}

// pids returns the postmasters and their children, from the kernel's
// children lists; without those (CONFIG_PROC_CHILDREN), every postgres
// process.
func (s *pgSampler) pids() ([]int, error) {
	out := append([]int(nil), s.postmasters...)
	for _, pm := range s.postmasters {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pm))
		if err != nil {
			return postgresPIDs()
		}
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pm, t.Name()))
			if err != nil {
				return postgresPIDs()
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					out = append(out, pid)
				}
			}
		}
	}
	return out, nil
}

// postgresPIDs lists the processes named postgres.
func postgresPIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing /proc: %w", err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if t, err := readProcTimes(e.Name()); err == nil && t.comm == "postgres" {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// counts reports whether the postgres process pid works for s.db.
func (s *pgSampler) counts(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return countsFor(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})), s.db)
}

// backgroundTitles are the process titles of Postgres's server-wide
// background processes, whose work (WAL writing, checkpoints) the loads
// cause too.
var backgroundTitles = []string{"checkpointer", "background writer", "walwriter", "wal writer",
	"autovacuum launcher", "logical replication launcher", "archiver", "stats collector", "startup"}

// countsFor reports whether a postgres process with this command line
// works for database db: the postmaster (its command line is the
// executable's path), a background process, or a backend or autovacuum
// worker of db. Titles look like "postgres: 15/main: user db 127.0.0.1(5) COPY"
// (with cluster_name set) or "postgres: autovacuum worker db".
func countsFor(cmdline, db string) bool {
	title, ok := strings.CutPrefix(strings.TrimSpace(cmdline), "postgres: ")
	if !ok {
		return !strings.HasPrefix(cmdline, "postgres:") // the postmaster
	}
	if first, rest, ok := strings.Cut(title, " "); ok && strings.HasSuffix(first, ":") {
		title = rest // the cluster_name prefix
	}
	for _, bg := range backgroundTitles {
		if strings.HasPrefix(title, bg) {
			return true
		}
	}
	f := strings.Fields(title)
	return slices.Contains(f[:min(len(f), 3)], db)
}
