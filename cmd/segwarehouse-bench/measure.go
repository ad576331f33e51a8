package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// pollEvery is how often the offsets table is read while the loader runs.
const pollEvery = 100 * time.Millisecond

// meter measures the CPU spent in a set of windows: by the Postgres
// processes working for one database, by this process, and by the whole
// machine.
type meter struct {
	pg                *pgSampler
	pg0, self0, busy0 float64
	pgCPU, selfCPU    float64 // seconds, summed over the windows
	busyCPU           float64
}

// newMeter returns a meter of the Postgres CPU spent for database db; the
// excluded backend pids (monitoring connections) do not count.
func newMeter(db string, exclude ...int) (*meter, error) {
	pg, err := newPGSampler(db, exclude...)
	if err != nil {
		return nil, err
	}
	m := &meter{pg: pg}
	if _, err := m.pg.Snapshot(); err != nil {
		return nil, err
	}
	return m, nil
}

// begin opens a window.
func (m *meter) begin() (err error) {
	m.pg0, m.self0, m.busy0, err = m.read()
	return err
}

// end closes the window opened by begin and adds its CPU to the totals.
func (m *meter) end() error {
	pg, self, busy, err := m.read()
	if err != nil {
		return err
	}
	m.pgCPU += pg - m.pg0
	m.selfCPU += self - m.self0
	m.busyCPU += busy - m.busy0
	return nil
}

func (m *meter) read() (pg, self, busy float64, err error) {
	if pg, err = m.pg.Snapshot(); err != nil {
		return
	}
	if self, err = processCPU("self"); err != nil {
		return
	}
	busy, err = machineBusy()
	return
}

// sampleUntil takes a Postgres CPU snapshot every pollEvery until stop is
// closed, so that a backend that exits early keeps most of its CPU.
func (m *meter) sampleUntil(stop <-chan struct{}) {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			_, _ = m.pg.Snapshot() // errors show at the window's end
		}
	}
}

// offsetsState maps a partition to its committed next offset in the
// loader's offsets table (-1: claimed, nothing committed yet).
type offsetsState map[int32]int64

// readOffsets reads the loader's offsets rows of the benchmark's topic;
// before the loader has created its tables there are none.
func readOffsets(ctx context.Context, c *pgx.Conn) (offsetsState, error) {
	rows, err := c.Query(ctx, `SELECT partition, coalesce(next_offset, -1) FROM `+
		pgx.Identifier{loaderSchema, "offsets"}.Sanitize()+` WHERE consumer_group = $1 AND topic = $2`, group, topic)
	st := make(offsetsState)
	if err == nil {
		var p int32
		var next int64
		_, err = pgx.ForEachRow(rows, []any{&p, &next}, func() error { st[p] = next; return nil })
	}
	switch {
	case isUndefinedTable(err):
		return st, nil
	case err != nil:
		return nil, fmt.Errorf("reading the offsets table: %w", err)
	}
	return st, nil
}

// claimedAll reports whether the loader holds every partition.
func (st offsetsState) claimedAll() bool { return len(st) >= partitions }

// reached reports whether every partition's committed offset is its end
// offset (a partition with no records needs nothing).
func (st offsetsState) reached(ends map[int32]int64) bool {
	for p, end := range ends {
		if end > 0 && st[p] != end {
			return false
		}
	}
	return true
}

// watcher polls the offsets table while a loader runs.
type watcher struct {
	conn      *pgx.Conn
	ld        runningLoader
	claimedAt time.Time // when every partition was first seen claimed
}

// waitFor polls every pollEvery until done(state) holds, the loader stops
// or ctx ends.
func (w *watcher) waitFor(ctx context.Context, done func(offsetsState) bool) error {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		st, err := readOffsets(ctx, w.conn)
		if err != nil {
			return err
		}
		if w.claimedAt.IsZero() && st.claimedAll() {
			w.claimedAt = time.Now()
		}
		if done(st) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the loader (offsets %v): %w\nloader log:\n%s", st, ctx.Err(), w.ld.Log())
		case <-w.ld.Done():
			return fmt.Errorf("the loader stopped before it had committed every offset\nloader log:\n%s", w.ld.Log())
		case <-t.C:
		}
	}
}

// loaderRun is what one loader run measured.
type loaderRun struct {
	inProcess bool
	produced  produced      // the events (for a stream: produced during the run)
	seconds   float64       // start (a stream: its first event) until every offset was committed
	claimed   float64       // start until every partition was claimed
	loaderCPU float64       // seconds; in process: the whole process's
	benchCPU  float64       // this process (broker, producer, monitoring) apart from an in-process loader
	pgCPU     float64       // Postgres for the loader's database
	otherCPU  float64       // the rest of the machine's busy time
	peakRSS   int64         // bytes; 0 when unknown
	load      loadsSummary  // from _segwarehouse.loads
	tables    int           // tables in the source schema
	rows      int64         // rows in the source schema
	latency   *latencyStats // stream workloads only
}

// loaderPlan is how to start the loader for one run.
type loaderPlan struct {
	bin      string // the built binary; "" runs the loader in process
	env      map[string]string
	logPath  string
	profile  string // CPU profile file of an in-process run
	replicas int    // child processes in one group; 0 or 1: one
}

// start starts the loader.
func (p loaderPlan) start() (runningLoader, error) {
	if p.bin == "" {
		return startInProcess(p.env, p.logPath, p.profile)
	}
	if p.replicas <= 1 {
		return startChild(p.bin, p.env, p.logPath)
	}
	var set []runningLoader
	for i := range p.replicas {
		logPath := strings.TrimSuffix(p.logPath, ".log") + fmt.Sprintf("-%d.log", i+1)
		l, err := startChild(p.bin, p.env, logPath)
		if err != nil {
			for _, started := range set {
				_ = started.Stop()
			}
			return nil, err
		}
		set = append(set, l)
	}
	return newReplicaSet(set), nil
}

// runLoader starts the loader on db, produces the stream while it runs
// when the workload is one (the backlog is already in the broker, with
// the end offsets ends), waits until every offset is committed and
// measures.
func runLoader(ctx context.Context, srv *server, db *database, plan loaderPlan, w workload, prod func(context.Context) (produced, map[int32]int64, error), ends map[int32]int64) (*loaderRun, error) {
	mon, err := connect(ctx, db.dsn)
	if err != nil {
		return nil, err
	}
	defer mon.Close(context.Background())
	if err := srv.checkpoint(ctx); err != nil {
		return nil, err
	}
	m, err := newMeter(db.name, backendPID(mon))
	if err != nil {
		return nil, err
	}
	if err := m.begin(); err != nil {
		return nil, err
	}
	start := time.Now()
	ld, err := plan.start()
	if err != nil {
		return nil, err
	}
	stopSampling := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Go(func() { m.sampleUntil(stopSampling) })
	run, err := measureRun(ctx, m, ld, mon, start, w, prod, ends)
	close(stopSampling)
	sampling.Wait()
	if serr := ld.Stop(); serr != nil {
		err = errors.Join(err, fmt.Errorf("%w\nloader log:\n%s", serr, ld.Log()))
	}
	if err != nil {
		return nil, err
	}
	run.inProcess = plan.bin == ""
	if err := run.query(ctx, mon, w); err != nil {
		return nil, err
	}
	return run, nil
}

// measureRun waits for the running loader ld to commit everything and
// reads its CPU and memory before it is stopped.
func measureRun(ctx context.Context, m *meter, ld runningLoader, mon *pgx.Conn, start time.Time, w workload,
	prod func(context.Context) (produced, map[int32]int64, error), ends map[int32]int64) (*loaderRun, error) {
	run := &loaderRun{}
	wt := &watcher{conn: mon, ld: ld}
	from := start
	if w.stream() {
		if err := wt.waitFor(ctx, offsetsState.claimedAll); err != nil {
			return nil, err
		}
		from = time.Now()
		var err error
		if run.produced, ends, err = prod(ctx); err != nil {
			return nil, err
		}
	}
	if err := wt.waitFor(ctx, func(st offsetsState) bool { return st.reached(ends) }); err != nil {
		return nil, err
	}
	run.seconds = time.Since(from).Seconds()
	run.claimed = wt.claimedAt.Sub(start).Seconds()
	var err error
	if run.loaderCPU, err = ld.CPU(); err != nil {
		return nil, err
	}
	if run.peakRSS, err = ld.PeakRSS(); errors.Is(err, errInProcess) {
		run.peakRSS, err = 0, nil
	}
	if err != nil {
		return nil, err
	}
	if err := m.end(); err != nil {
		return nil, err
	}
	run.pgCPU = m.pgCPU
	run.benchCPU = m.selfCPU
	if _, in := ld.(*inProcessLoader); in {
		run.benchCPU = 0 // it is in loaderCPU
	}
	run.otherCPU = m.busyCPU - run.loaderCPU - run.benchCPU - run.pgCPU
	return run, nil
}
