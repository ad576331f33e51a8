package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
	"github.com/segwarehouse/segwarehouse/internal/testlog"
)

// stalledStream feeds a COPY one row, then either stops (until release) or
// goes on with a row every 50ms (until release), then ends.
type stalledStream struct {
	trickle bool
	release <-chan struct{}
	sent    bool
}

func (r *stalledStream) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		return copy(p, "1\n"), nil
	}
	if r.trickle {
		select {
		case <-r.release:
			return 0, io.EOF
		case <-time.After(50 * time.Millisecond):
			return copy(p, "2\n"), nil
		}
	}
	<-r.release
	return 0, io.EOF
}

// stallInCopy opens a session that begins a transaction, runs lock, then
// starts a COPY into a temporary table whose stream stops, or trickles,
// as stalledStream does. It returns the session's backend pid, once Postgres
// shows it waiting for the stream, and a func that lets the stream end
// and returns the COPY's error.
func stallInCopy(t *testing.T, dsn, lock string, trickle bool) (int32, func() error) {
	t.Helper()
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	var pid int32
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TEMP TABLE stream (n int); BEGIN; "+lock); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	copied := make(chan error, 1)
	go func() {
		_, err := conn.PgConn().CopyFrom(ctx, &stalledStream{trickle: trickle, release: release}, "COPY stream FROM STDIN")
		copied <- err
	}()
	end := sync.OnceValue(func() error {
		close(release)
		return <-copied
	})
	t.Cleanup(func() { end() }) // the COPY ends before the connection closes, also when t fails early
	waitUntil(t, "the COPY to wait for its stream", func() bool {
		return count(t, dsn, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND wait_event = 'ClientRead'`, pid) == 1
	})
	return pid, end
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func alive(t *testing.T, dsn string, pid int32) bool {
	return count(t, dsn, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid) == 1
}

// TestStalledLoaderEnded stalls three sessions in the middle of a COPY,
// each with another session waiting for its locks: a loader's flush
// whose stream stopped (it holds its partition's offsets row), a loader's
// flush whose stream is slow but moving, and a session outside any flush
// (a lock on another table). Only the first is ended, on the second sweep
// that sees it, and the partition's new owner then claims it.
func TestStalledLoaderEnded(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, "zombie", 0, 1)
	pgtest.Exec(t, dsn, `CREATE TABLE locked (n int)`)

	zombie, releaseZombie := stallInCopy(t, dsn, `UPDATE _segwarehouse.offsets SET updated_at = now() WHERE partition = 0`, false)
	slow, releaseSlow := stallInCopy(t, dsn, `UPDATE _segwarehouse.offsets SET updated_at = now() WHERE partition = 1`, true)
	stranger, releaseStranger := stallInCopy(t, dsn, `LOCK TABLE locked IN ACCESS EXCLUSIVE MODE`, false)

	claims := make(chan error, 2)
	for _, p := range []int32{0, 1} {
		go func() {
			_, err := l.Claim(ctxT(t), testGroup, "survivor", map[string][]int32{testTopic: {p}})
			claims <- err
		}()
	}
	reader := make(chan error, 1)
	go func() {
		conn, err := pgx.Connect(ctxT(t), dsn)
		if err == nil {
			_, err = conn.Exec(ctxT(t), `SELECT * FROM locked`)
			conn.Close(context.Background())
		}
		reader <- err
	}()
	waitUntil(t, "three sessions waiting for locks", func() bool {
		return count(t, dsn, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 3
	})

	const limit = 200 * time.Millisecond
	time.Sleep(limit + 50*time.Millisecond) // every statement is older than the limit
	w := &stallWatch{pool: l.pool, offsets: l.offsets, limit: limit}
	ended, err := w.sweep(ctxT(t))
	if err != nil || len(ended) != 0 {
		t.Fatalf("first sweep ended %v (%v), want nothing: a session is ended on the second sighting", ended, err)
	}
	if _, ok := w.seen[zombie]; !ok {
		t.Fatalf("first sweep saw %v, want the zombie %d among them", w.seen, zombie)
	}
	if _, ok := w.seen[stranger]; ok {
		t.Errorf("first sweep took session %d, outside any flush, for a stalled loader", stranger)
	}
	if s, ok := w.seen[slow]; ok { // the slow stream sends more rows
		waitUntil(t, "the slow stream to move", func() bool {
			return count(t, dsn, `SELECT coalesce(max(bytes_processed), -1) FROM pg_stat_progress_copy WHERE pid = $1`, slow) > s.bytes
		})
	}
	ended, err = w.sweep(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int32
	for _, s := range ended {
		pids = append(pids, s.PID)
	}
	if !slices.Equal(pids, []int32{zombie}) {
		t.Fatalf("second sweep ended %v, want only the zombie %d (slow %d, stranger %d)", pids, zombie, slow, stranger)
	}
	if ended[0].StalledFor < limit || ended[0].Query != "COPY stream FROM STDIN" {
		t.Errorf("ended %+v: want stalled_for above %s and its statement", ended[0], limit)
	}

	// The partition moves on; the zombie's transaction is gone.
	if err := <-claims; err != nil {
		t.Fatalf("claim of the zombie's partition: %v", err)
	}
	wantRows(t, dsn, [][]any{{int32(0), "survivor"}, {int32(1), "zombie"}}, `SELECT partition, owner FROM _segwarehouse.offsets ORDER BY 1`)
	if err := releaseZombie(); err == nil {
		t.Error("the zombie's COPY succeeded after its session was ended")
	}
	waitUntil(t, "the zombie's backend to exit", func() bool { return !alive(t, dsn, zombie) })
	if !alive(t, dsn, slow) || !alive(t, dsn, stranger) {
		t.Fatalf("the slow flush (%v) or the stranger (%v) was ended", alive(t, dsn, slow), alive(t, dsn, stranger))
	}

	// Left alone, the others finish normally.
	if err := releaseStranger(); err != nil {
		t.Fatal(err)
	}
	if err := releaseSlow(); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, dsn, `SELECT pg_terminate_backend($1)`, stranger) // ends its transaction: the reader goes on
	pgtest.Exec(t, dsn, `SELECT pg_terminate_backend($1)`, slow)
	if err := <-reader; err != nil {
		t.Fatal(err)
	}
	if err := <-claims; err != nil {
		t.Fatal(err)
	}
}

// TestStallWatcher: a loader whose sessions time out after 600ms sweeps
// for stalled sessions on its own, and ends the one its Claim waits for.
func TestStallWatcher(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDB(t)
	cfg := testConfig(dsn)
	cfg.IdleInTxTimeout = 600 * time.Millisecond
	l, err := New(ctxT(t), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	claim(t, l, "zombie", 0)
	zombie, release := stallInCopy(t, dsn, `UPDATE _segwarehouse.offsets SET updated_at = now()`, false)
	if _, err := l.Claim(ctxT(t), testGroup, "survivor", map[string][]int32{testTopic: {0}}); err != nil {
		t.Fatalf("claim: %v", err)
	}
	// The claim may go on before the watcher has counted what it did.
	waitUntil(t, "the watcher to count the session it ended", func() bool { return l.StalledSessionsEnded() >= 1 })
	if n := l.StalledSessionsEnded(); n != 1 {
		t.Errorf("StalledSessionsEnded = %d, want 1", n)
	}
	var pe interface{ SQLState() string }
	if err := release(); !errors.As(err, &pe) || pe.SQLState() != "57P01" {
		t.Errorf("zombie's COPY ended with %v, want admin_shutdown (57P01): its session terminated", err)
	}
	waitUntil(t, "the zombie's backend to exit", func() bool { return !alive(t, dsn, zombie) })
}

// TestStallSweepWithoutCopyProgress runs the sweep as on Postgres before
// 14, which has no pg_stat_progress_copy: a stalled flush is still ended.
func TestStallSweepWithoutCopyProgress(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, "zombie", 0)
	zombie, release := stallInCopy(t, dsn, `UPDATE _segwarehouse.offsets SET updated_at = now()`, false)
	claimed := claimWaiting(t, l, dsn)
	const limit = 100 * time.Millisecond
	time.Sleep(limit)
	w := &stallWatch{pool: l.pool, offsets: l.offsets, limit: limit,
		query: strings.Replace(stallCandidates, progressCopy, noProgressCopy, 1)}
	var ended []stalledSession
	for i := 0; i < 2; i++ {
		var err error
		if ended, err = w.sweep(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if len(ended) != 1 || ended[0].PID != zombie {
		t.Fatalf("two sweeps ended %+v, want the zombie %d", ended, zombie)
	}
	if err := <-claimed; err != nil {
		t.Fatal(err)
	}
	if err := release(); err == nil {
		t.Error("the zombie's COPY succeeded after its session was ended")
	}
}

// claimWaiting starts l's claim of partition 0 for "survivor" and returns
// its result once the claim waits for a lock.
func claimWaiting(t *testing.T, l *Loader, dsn string) <-chan error {
	t.Helper()
	claimed := make(chan error, 1)
	go func() {
		_, err := l.Claim(ctxT(t), testGroup, "survivor", map[string][]int32{testTopic: {0}})
		claimed <- err
	}()
	waitUntil(t, "the claim to wait for the zombie", func() bool {
		return count(t, dsn, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 1
	})
	return claimed
}

// crossRole is a loader (role sweeper) whose claim of partition 0 waits for
// a session of another role (zombie) frozen in the middle of a COPY inside
// its transaction, holding the partition's offsets row.
type crossRole struct {
	dsn, sweeper, zombie string
	l                    *Loader
	frozen               int32
	release              func() error
	claimed              <-chan error
}

func newCrossRole(t *testing.T, cfg func(*Config), log *slog.Logger) *crossRole {
	t.Helper()
	x := &crossRole{dsn: pgtest.NewDB(t)}
	db := pgx.Identifier{pgtest.DatabaseName(t, x.dsn)}.Sanitize()
	var sweeperDSN, zombieDSN string
	x.sweeper, sweeperDSN = pgtest.NewRole(t, x.dsn)
	x.zombie, zombieDSN = pgtest.NewRole(t, x.dsn)
	pgtest.Exec(t, x.dsn, `GRANT CONNECT, CREATE, TEMPORARY ON DATABASE `+db+` TO `+x.sweeper+`, `+x.zombie)
	c := testConfig(sweeperDSN)
	cfg(&c)
	var err error
	if x.l, err = New(ctxT(t), c, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.l.Close)
	claim(t, x.l, "zombie", 0)
	pgtest.Exec(t, x.dsn, `GRANT USAGE ON SCHEMA _segwarehouse TO `+x.zombie+`; GRANT SELECT, UPDATE ON _segwarehouse.offsets TO `+x.zombie)
	x.frozen, x.release = stallInCopy(t, zombieDSN, `UPDATE _segwarehouse.offsets SET updated_at = now()`, false)
	x.claimed = claimWaiting(t, x.l, x.dsn)
	return x
}

// TestStallSweepAcrossRoles: a loader of another role, frozen in the
// middle of its flush, is hidden from a role without pg_read_all_stats:
// the sweep cannot end it but reports it (hidden); once the sweeping role
// has pg_read_all_stats and pg_signal_backend, the sweep ends it.
func TestStallSweepAcrossRoles(t *testing.T) {
	t.Parallel()
	x := newCrossRole(t, func(*Config) {}, testLogger(t))
	const limit = 100 * time.Millisecond
	time.Sleep(limit)
	w := &stallWatch{pool: x.l.pool, offsets: x.l.offsets, limit: limit}
	sweepTwice := func() []stalledSession {
		var ended []stalledSession
		for range 2 {
			e, err := w.sweep(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			ended = append(ended, e...)
		}
		return ended
	}
	if ended := sweepTwice(); len(ended) != 0 {
		t.Fatalf("a role that cannot see the zombie's session ended %+v", ended)
	}
	hidden, err := w.hidden(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := []hiddenSession{{PID: x.frozen, Role: x.zombie}}; !slices.Equal(hidden, want) {
		t.Fatalf("hidden = %+v, want %+v", hidden, want)
	}

	// Seen but not to be signalled: Postgres refuses, and the fix says
	// what is missing.
	pgtest.Exec(t, x.dsn, `GRANT pg_read_all_stats TO `+x.sweeper)
	if _, err := w.sweep(ctxT(t)); err != nil {
		t.Fatalf("first sweep with pg_read_all_stats: %v", err)
	}
	_, err = w.sweep(ctxT(t))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(stallFix(err), "GRANT pg_signal_backend") {
		t.Fatalf("sweep without pg_signal_backend: %v (fix %q); want 42501 and the GRANT", err, stallFix(err))
	}

	pgtest.Exec(t, x.dsn, `GRANT pg_signal_backend TO `+x.sweeper)
	if hidden, err := w.hidden(ctxT(t)); err != nil || len(hidden) != 0 {
		t.Fatalf("hidden once the sweeper may see it = %+v, %v; want none (the sweep's to end)", hidden, err)
	}
	if ended := sweepTwice(); len(ended) != 1 || ended[0].PID != x.frozen {
		t.Fatalf("with pg_read_all_stats and pg_signal_backend the sweep ended %+v, want the zombie %d", ended, x.frozen)
	}
	if err := <-x.claimed; err != nil {
		t.Fatal(err)
	}
	if err := x.release(); err == nil {
		t.Error("the zombie's COPY succeeded after its session was ended")
	}
}

// TestStallWatcherAcrossRoles: the loader's own watcher logs the hidden
// session once, with the GRANT that fixes it, and after that GRANT ends
// the session, so the claim goes through.
func TestStallWatcherAcrossRoles(t *testing.T) {
	t.Parallel()
	var logs testlog.Buffer
	x := newCrossRole(t, func(c *Config) { c.IdleInTxTimeout = 300 * time.Millisecond }, slog.New(slog.NewTextHandler(&logs, nil)))
	const warning = "a session of another role, inside a flush, holds locks"
	waitUntil(t, "the watcher's warning", func() bool { return strings.Contains(logs.String(), warning) })
	fix := "GRANT pg_read_all_stats, pg_signal_backend TO " + pgx.Identifier{x.sweeper}.Sanitize()
	// The text handler quotes the fix, escaping its identifier's quotes.
	quoted := strings.ReplaceAll(fix, `"`, `\"`)
	if line := logs.String(); !strings.Contains(line, quoted) || !strings.Contains(line, fmt.Sprintf("pid=%d", x.frozen)) || !strings.Contains(line, "role="+x.zombie) {
		t.Fatalf("the warning does not name the session, its role and the fix %q:\n%s", fix, line)
	}
	time.Sleep(time.Second) // three more sweeps
	if n := strings.Count(logs.String(), warning); n != 1 {
		t.Errorf("the warning was logged %d times, want once per session:\n%s", n, logs.String())
	}
	pgtest.Exec(t, x.dsn, fix)
	if err := <-x.claimed; err != nil {
		t.Fatal(err)
	}
	// The claim goes through as soon as the backend is gone, which can be
	// before the watcher, back from pg_terminate_backend, counts it.
	waitUntil(t, "the watcher to count the session it ended", func() bool { return x.l.StalledSessionsEnded() >= 1 })
	if n := x.l.StalledSessionsEnded(); n != 1 {
		t.Errorf("StalledSessionsEnded = %d, want 1", n)
	}
}
