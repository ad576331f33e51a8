package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A loader frozen in the middle of a statement (a stopped process, a
// frozen VM or pod whose TCP connection stays up) while its backend waits
// for the rest of a COPY stream or of a pipelined batch counts as active,
// not idle: idle_in_transaction_session_timeout does not end it, and
// neither does statement_timeout (Postgres holds query cancels while it
// reads a COPY stream from the client). Such a session keeps its
// partitions' offsets rows, and perhaps the merge lock, until its TCP
// connection dies, which can take hours: the partitions' new owner and
// every other loader's merges wait on it.
//
// Every loader therefore sweeps the database every third of the stall
// limit and ends such sessions with pg_terminate_backend, the one signal
// Postgres handles while it waits for its client. A session is ended only
// when, in two sweeps in a row, all of these hold:
//   - it is inside a flush: it holds a write lock on the offsets table,
//     which only a loader's data transaction takes (the fence runs first);
//   - its current statement began more than the stall limit ago and its
//     backend is waiting for its client (wait event ClientRead);
//   - another session waits for one of its locks;
//   - it made no progress between the two sweeps: the same statement, and
//     a COPY's bytes_processed (pg_stat_progress_copy) unchanged, so a
//     slow but moving COPY over a slow link is left alone.
//
// Ending it loses nothing: its transaction rolls back, it would have been
// fenced anyway once its partitions were claimed, and a loader that does
// come back retries on a new connection. Sessions of another role are
// seen and ended only when the loader's role may (pg_read_all_stats,
// pg_signal_backend); running every loader as one role needs neither. A
// session it cannot see, inside a flush and blocking, is reported with the
// GRANT (hiddenBlockers).

// inFlush holds for the session a that is inside a loader's flush: it
// holds a write lock on the offsets table ($2), which only a data
// transaction takes (the fence runs first).
const inFlush = `EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.granted
		AND l.locktype = 'relation' AND l.relation = $2::regclass AND l.mode = 'RowExclusiveLock')`

// stallCandidates lists the sessions that meet every condition but the
// last one. Postgres before 14 has no pg_stat_progress_copy: there
// noProgressCopy stands in for it, and a COPY waiting for its client in
// two sweeps counts as stalled.
const stallCandidates = `SELECT a.pid, a.query_start, coalesce(p.bytes_processed, -1),
	coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'),
	extract(epoch FROM now() - a.query_start)::float8, left(a.query, 80)
FROM pg_stat_activity a LEFT JOIN ` + progressCopy + ` ON p.pid = a.pid
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
	AND a.state = 'active' AND a.wait_event_type = 'Client' AND a.wait_event = 'ClientRead'
	AND a.query_start < now() - make_interval(secs => $1)
	AND ` + inFlush + `
	AND EXISTS (SELECT 1 FROM pg_stat_activity w WHERE w.wait_event_type = 'Lock'
		AND a.pid = ANY (pg_blocking_pids(w.pid)))`

const (
	progressCopy   = "pg_stat_progress_copy p"
	noProgressCopy = "(SELECT NULL::int AS pid, NULL::bigint AS bytes_processed) p"
)

// hiddenBlockers lists the sessions of another role that are inside a
// flush and hold locks this role's sessions have waited for longer than
// the stall limit, where this role cannot see what those sessions do
// (their state is hidden without pg_read_all_stats), so the sweep cannot
// tell whether they are stalled.
const hiddenBlockers = `SELECT DISTINCT b.pid, coalesce(a.usename::text, ''), coalesce(a.application_name, '')
FROM pg_stat_activity w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(pid)
JOIN pg_stat_activity a ON a.pid = b.pid
WHERE w.datname = current_database() AND w.wait_event_type = 'Lock'
	AND w.query_start < now() - make_interval(secs => $1)
	AND a.state IS NULL
	AND ` + inFlush

// hiddenSession is a session hiddenBlockers found.
type hiddenSession struct {
	PID  int32
	Role string
	App  string
}

// hidden returns the sessions hiddenBlockers finds.
func (w *stallWatch) hidden(ctx context.Context) ([]hiddenSession, error) {
	rows, err := w.pool.Query(ctx, hiddenBlockers, w.limit.Seconds(), w.offsets)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[hiddenSession])
}

// stalledSession is a session a sweep found stalled.
type stalledSession struct {
	PID        int32
	App        string
	Client     string
	StalledFor time.Duration
	Query      string

	start time.Time // its statement's start
	bytes int64     // its COPY's bytes_processed, -1 outside a COPY
}

// stallWatch remembers what one sweep saw for the next one.
type stallWatch struct {
	pool    *pgxpool.Pool
	offsets string        // the offsets table's quoted name
	limit   time.Duration // how long a statement may wait for its client
	query   string        // stallCandidates for the server's version
	seen    map[int32]stalledSession
}

// sweep ends every session that has met the conditions above in this
// sweep and the one before, and returns those it ended.
func (w *stallWatch) sweep(ctx context.Context) ([]stalledSession, error) {
	if w.query == "" {
		var version int
		if err := w.pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
			return nil, err
		}
		w.query = stallCandidates
		if version < 140000 {
			w.query = strings.Replace(stallCandidates, progressCopy, noProgressCopy, 1)
		}
	}
	rows, err := w.pool.Query(ctx, w.query, w.limit.Seconds(), w.offsets)
	if err != nil {
		return nil, err
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stalledSession, error) {
		var s stalledSession
		var secs float64
		err := r.Scan(&s.PID, &s.start, &s.bytes, &s.App, &s.Client, &secs, &s.Query)
		s.StalledFor = time.Duration(secs * float64(time.Second)).Round(time.Millisecond)
		return s, err
	})
	if err != nil {
		return nil, err
	}
	prev := w.seen
	w.seen = make(map[int32]stalledSession, len(found))
	var ended []stalledSession
	for _, s := range found {
		p, ok := prev[s.PID]
		if !ok || !p.start.Equal(s.start) || p.bytes != s.bytes {
			w.seen[s.PID] = s // first seen, or it moved: look again next time
			continue
		}
		var done bool
		if err := w.pool.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, s.PID).Scan(&done); err != nil {
			return ended, err
		}
		if done {
			ended = append(ended, s)
		}
	}
	return ended, nil
}

// watchStalls sweeps every limit/3 until ctx ends, logging every session
// it ends and, once per cause, why a sweep failed.
func (l *Loader) watchStalls(ctx context.Context, limit time.Duration) {
	w := &stallWatch{pool: l.pool, offsets: l.offsets, limit: limit}
	every := max(limit/3, 50*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	var lastErr string
	warned := map[int32]bool{} // hidden sessions already logged
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A sweep that outlasts a tick only drops ticks (the ticker does
		// not queue them); a short deadline could lose the answer of a
		// pg_terminate_backend that did end a session, which then goes
		// unlogged and uncounted.
		sctx, cancel := context.WithTimeout(ctx, max(every, 5*time.Second))
		ended, err := w.sweep(sctx)
		for _, s := range ended {
			l.stalls.Add(1)
			l.log.Warn("ended a loader session stalled in the middle of a statement inside its flush, which other sessions were waiting for",
				"pid", s.PID, "application_name", s.App, "client", s.Client, "stalled_for", s.StalledFor, "statement", s.Query)
		}
		if err == nil {
			warned, err = l.warnHidden(sctx, w, warned)
		}
		cancel()
		switch {
		case err == nil:
			lastErr = ""
		case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
			// Closing, or the pool is busy: the next sweep.
		case err.Error() != lastErr:
			lastErr = err.Error()
			l.log.Warn("could not look for loader sessions stalled inside a flush", "error", l.wrap("sweeping for stalled sessions", err), "fix", stallFix(err))
		}
	}
}

// warnHidden logs, once per session, what hidden finds; it returns the
// sessions logged so far that still block.
func (l *Loader) warnHidden(ctx context.Context, w *stallWatch, warned map[int32]bool) (map[int32]bool, error) {
	hidden, err := w.hidden(ctx)
	if err != nil {
		return warned, err
	}
	now := make(map[int32]bool, len(hidden))
	for _, h := range hidden {
		now[h.PID] = true
		if warned[h.PID] {
			continue
		}
		l.log.Warn("a session of another role, inside a flush, holds locks that loader sessions have waited for longer than the stall limit; this loader cannot see whether it is stalled",
			"pid", h.PID, "role", h.Role, "application_name", h.App, "limit", w.limit,
			"fix", fmt.Sprintf("if it is a loader, run every loader as one role, or GRANT pg_read_all_stats, pg_signal_backend TO %s so that a loader may end another's stalled session", pgx.Identifier{l.user}.Sanitize()))
	}
	return now, nil
}

// stallFix says what an operator does about a failed sweep.
func stallFix(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return "run every loader as one role, or GRANT pg_signal_backend TO the loaders' role, so a loader may end another's stalled session"
	}
	return "none if the next sweep passes: it runs again"
}
