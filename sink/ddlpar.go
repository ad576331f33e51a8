package sink

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sourcegraph/conc/pool"
)

// ddlParallelMin is the fewest new tables worth a second connection.
// Creating a Segment event table (its columns, primary key, row types
// and TOAST table) costs Postgres 1.5–3 ms of one backend, so
// the 2,000 tables of a fresh warehouse's first flush take seconds; two
// backends create them 1.5–1.8× as fast on a 2-core machine (a third
// did not help there).
const ddlParallelMin = 64

// ddlChunk is how many statements a connection takes from the queue at a
// time, sent as one query.
const ddlChunk = 16

// ddlHelperWait bounds the wait for the helper's connection; without one
// the DDL transaction runs every statement itself.
const ddlHelperWait = time.Second

// execDDL runs one applyDDL transaction's statements: the new schemas',
// then the new tables' and the added columns'. Few run in tx. Many new
// tables are shared, a chunk at a time, with a helper connection whose
// own transaction commits before tx does: tx holds the DDL advisory lock
// from before the helper starts until after it ends, so replicas still
// change the schema one at a time, and the re-read in tx (read
// committed) sees the helper's tables. New schemas are then committed
// first, by the helper, as the tables created in them by either
// transaction need them. A failed statement on either side stops both
// and fails the whole change; what the helper committed stays, and the
// retry plans only what is missing.
//
// Only CREATE TABLEs go to the helper. An ALTER TABLE may wait for a
// lock an analyst's query holds (up to ddlLockTimeout); in the helper
// that wait would leave tx idle in its transaction, where Postgres's
// idle_in_transaction_session_timeout (SEGWH_DATABASE_IDLE_IN_TX_TIMEOUT)
// may end tx's session, and with it the advisory lock, while the helper
// still works. A new table's name is locked by nobody else.
//
// It returns how many connections ran statements.
func (l *Loader) execDDL(ctx context.Context, tx pgx.Tx, schemaStmts, creates, alters []string) (int, error) {
	var helper *pgxpool.Conn
	if len(creates) >= ddlParallelMin {
		helper = l.ddlHelper(ctx)
	}
	if helper == nil {
		for _, sql := range joinStatements(slices.Concat(schemaStmts, creates, alters), maxDDLBytes) {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return 1, err
			}
		}
		return 1, nil
	}
	defer helper.Release()
	if len(schemaStmts) > 0 {
		if err := ddlTx(ctx, helper, func() (string, bool) { return "", false }, schemaStmts); err != nil {
			return 2, err
		}
	}
	chunks := chunkStatements(creates, ddlChunk)
	var next atomic.Int64
	var stop atomic.Bool
	take := func() (string, bool) {
		i := int(next.Add(1) - 1)
		if stop.Load() || i >= len(chunks) {
			return "", false
		}
		return chunks[i], true
	}
	p := pool.New().WithErrors().WithFirstError().WithContext(ctx).WithCancelOnError()
	p.Go(func(hctx context.Context) error {
		err := ddlTx(hctx, helper, take, nil)
		if err != nil {
			stop.Store(true)
		}
		return err
	})
	p.Go(func(context.Context) error {
		// tx keeps the caller's context: cancelling its query would
		// take the connection down with it. Its own ALTERs first, then
		// a share of the new tables.
		run := func(sql string) error {
			if _, err := tx.Exec(ctx, sql); err != nil {
				stop.Store(true)
				return err
			}
			return nil
		}
		for _, sql := range joinStatements(alters, maxDDLBytes) {
			if err := run(sql); err != nil {
				return err
			}
		}
		for sql, ok := take(); ok; sql, ok = take() {
			if err := run(sql); err != nil {
				return err
			}
		}
		return nil
	})
	return 2, p.Wait()
}

// ddlHelper returns a second connection for DDL, or nil when the pool
// has none to spare soon: a flush in the air holds one, the DDL
// transaction another.
func (l *Loader) ddlHelper(ctx context.Context) *pgxpool.Conn {
	st := l.pool.Stat()
	if st.AcquiredConns() >= st.MaxConns() {
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, ddlHelperWait)
	defer cancel()
	c, err := l.pool.Acquire(actx)
	if err != nil {
		return nil
	}
	return c
}

// ddlTx runs first, then the chunks take hands out, in one transaction
// on c with the DDL lock timeout.
func ddlTx(ctx context.Context, c *pgxpool.Conn, take func() (string, bool), first []string) error {
	return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		stmts := append([]string{"SET LOCAL lock_timeout = '" + ddlLockTimeout + "'"}, first...)
		if _, err := tx.Exec(ctx, strings.Join(stmts, ";\n")); err != nil {
			return err
		}
		for sql, ok := take(); ok; sql, ok = take() {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	})
}

// chunkStatements joins stmts with ";" in groups of n.
func chunkStatements(stmts []string, n int) []string {
	out := make([]string, 0, (len(stmts)+n-1)/n)
	for len(stmts) > 0 {
		k := min(n, len(stmts))
		out = append(out, strings.Join(stmts[:k], ";\n"))
		stmts = stmts[k:]
	}
	return out
}
