package sink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
	"github.com/segwarehouse/segwarehouse/schema"
)

// copyPipelined sends three tables' COPYs in one stream (the first large
// enough for several CopyData chunks). It copies all of them; a unique
// violation or a value that cannot be encoded in the middle table comes
// back for that table, with each table's result reported in order and
// nothing written once rolled back, on a connection that still works; a
// cancelled context sends nothing.
func TestCopyPipelined(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	conn := pgtest.Connect(t, ctx, pgtest.NewDB(t))
	for _, tb := range []string{"a", "b", "c"} {
		if _, err := conn.Exec(ctx, `CREATE TABLE "`+tb+`" (id text PRIMARY KEY, n bigint, note text, uuid_ts timestamptz)`); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO b (id) VALUES ('taken')`); err != nil {
		t.Fatal(err)
	}
	names := []string{"id", "n", "note", "uuid_ts"}
	types := []schema.Type{schema.Text, schema.BigInt, schema.Text, schema.Timestamptz}
	rows := func(prefix string, n int) []schema.Row {
		out := make([]schema.Row, n)
		for i := range out {
			id := fmt.Sprintf("%s%05d", prefix, i)
			out[i] = schema.Row{ID: id, Cols: []schema.Col{col("id", vStr(id)), col("n", vInt(int64(i))), col("note", vStr("a note of some length"))}}
		}
		return out
	}
	type result struct {
		counts []int64
		failed int
		err    error
		done   []error // per table, as reported; "missing" when not
	}
	run := func(ctx context.Context, b []schema.Row) result {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var r result
		missing := errors.New("missing")
		r.done = []error{missing, missing, missing}
		var items []pipedCopy
		for i, tr := range [][]schema.Row{rows("a", 5000), b, rows("c", 10)} {
			items = append(items, pipedCopy{
				table: pgx.Identifier{[]string{"a", "b", "c"}[i]},
				src:   newRowSource(tr, nil, names, types, t0),
				done:  func(err error) { r.done[i] = err },
			})
		}
		r.counts, r.failed, r.err = copyPipelined(ctx, tx, items)
		if r.err == nil {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		} else if err := tx.Rollback(context.Background()); err != nil {
			t.Fatalf("rollback after %v: %v", r.err, err)
		}
		return r
	}
	counts := func() string {
		var a, b, c int64
		if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b), (SELECT count(*) FROM c)`).Scan(&a, &b, &c); err != nil {
			t.Fatalf("the connection after the stream: %v", err)
		}
		return fmt.Sprint(a, b, c)
	}

	dup := append(rows("b", 3), schema.Row{ID: "taken", Cols: []schema.Col{col("id", vStr("taken"))}})
	r := run(ctx, dup)
	var pg *pgconn.PgError
	if !errors.As(r.err, &pg) || pg.Code != pgerrcode.UniqueViolation || r.failed != 1 {
		t.Fatalf("duplicate id in b: failed %d, %v", r.failed, r.err)
	}
	if r.done[0] != nil || !errors.As(r.done[1], &pg) || pg.Code != pgerrcode.UniqueViolation ||
		!errors.As(r.done[2], &pg) || pg.Code != pgerrcode.InFailedSQLTransaction {
		t.Fatalf("per-table results: %v", r.done)
	}
	if got := counts(); got != "0 1 0" {
		t.Fatalf("rows after the rolled-back stream: %s, want 0 1 0", got)
	}

	bad := rows("b", 3)
	bad[1].Cols[1] = col("n", vStr("not cast"))
	r = run(ctx, bad)
	var ve *valueError
	if !errors.As(r.err, &ve) || r.failed != 1 || !errors.As(r.done[1], &ve) || r.done[2] == nil {
		t.Fatalf("a value that cannot be encoded in b: failed %d, %v; per table %v", r.failed, r.err, r.done)
	}
	if got := counts(); got != "0 1 0" {
		t.Fatalf("rows after the rolled-back stream: %s, want 0 1 0", got)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if r = run(ctx, rows("b", 3)); r.err != nil { // a fresh tx first: Begin needs a live ctx
		t.Fatal(r.err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := copyPipelined(cancelled, tx, []pipedCopy{{table: pgx.Identifier{"c"}, src: newRowSource(rows("x", 1), nil, names, types, t0)}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	if want := []int64{5000, 3, 10}; fmt.Sprint(r.counts) != fmt.Sprint(want) || r.failed != -1 || r.done[0] != nil || r.done[1] != nil || r.done[2] != nil {
		t.Fatalf("clean stream: counts %v failed %d per table %v", r.counts, r.failed, r.done)
	}
	if got := counts(); got != "5000 4 10" {
		t.Fatalf("rows after the clean stream: %s, want 5000 4 10", got)
	}
	var n int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM a WHERE uuid_ts = $1 AND note = 'a note of some length' AND n BETWEEN 0 AND 4999`, t0).Scan(&n); err != nil || n != 5000 {
		t.Fatalf("rows of a as copied: %d, %v", n, err)
	}
}

// Tables past one stream's answer budget go in further streams, each
// sent before the previous one's answers are read: the results and the
// failing table's index are the same as for one stream; the stream after
// a failed one was already sent and fails whole, and the streams after
// that are not sent.
// Items are built lazily, in order, once each: those of a stream never
// sent are never built.
func TestCopyPipelinedStreams(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	dsn := pgtest.NewDB(t)
	conn := pgtest.Connect(t, ctx, dsn)
	names := []string{"id", "n"}
	types := []schema.Type{schema.Text, schema.BigInt}
	perStream := pipelineAnswerBytes / copyAnswerBytes(pipedCopy{src: &rowSource{names: names}})
	tables := 3*perStream + 3
	for i := range tables {
		if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE TABLE t%03d (id text PRIMARY KEY, n bigint)`, i)); err != nil {
			t.Fatal(err)
		}
	}
	bad := perStream + 2 // in the second stream
	if _, err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO t%03d (id) VALUES ('taken')`, bad)); err != nil {
		t.Fatal(err)
	}
	run := func(withDup bool) (counts []int64, failed int, err error, done []string, built int) {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		done = make([]string, tables)
		items := make([]pipedCopy, tables)
		for i := range items {
			ids := []string{"x", "y"}
			if withDup && i == bad {
				ids[1] = "taken"
			}
			var rows []schema.Row
			for k, id := range ids {
				rows = append(rows, schema.Row{ID: id, Cols: []schema.Col{col("id", vStr(id)), col("n", vInt(int64(k)))}})
			}
			items[i] = pipedCopy{table: pgx.Identifier{fmt.Sprintf("t%03d", i)}, src: newRowSource(rows, nil, names, types, t0),
				done: func(err error) {
					var pg *pgconn.PgError
					switch {
					case err == nil:
						done[i] = "ok"
					case errors.As(err, &pg):
						done[i] = pg.Code
					default:
						done[i] = err.Error()
					}
				}}
		}
		counts, failed, err = copyPipelinedLazy(ctx, tx, len(items), func(i int) pipedCopy {
			if i != built {
				t.Errorf("item %d built after %d items, want them in order, once each", i, built)
			}
			built++
			return items[i]
		})
		if err == nil {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return counts, failed, err, done, built
	}
	_, failed, err, done, built := run(true)
	if built >= tables {
		t.Errorf("%d of %d items built; the last stream's were never sent and need not be", built, tables)
	}
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Code != pgerrcode.UniqueViolation || failed != bad {
		t.Fatalf("duplicate in table %d of %d (%d per stream): failed %d, %v", bad, tables, perStream, failed, err)
	}
	for i, d := range done {
		want := "ok"
		switch {
		case i == bad:
			want = pgerrcode.UniqueViolation
		case i > bad && i < 3*perStream:
			want = pgerrcode.InFailedSQLTransaction // in the failed stream, or the one sent before its answers were read
		case i >= 3*perStream:
			want = "" // not sent
		}
		if d != want {
			t.Fatalf("table %d: %q, want %q (all: %v)", i, d, want, done)
		}
	}
	counts, failed, err, _, built := run(false)
	if err != nil || failed != -1 || len(counts) != tables || built != tables {
		t.Fatalf("clean streams: %v, failed %d, %d counts, %d items built", err, failed, len(counts), built)
	}
	for i, n := range counts {
		if n != 2 {
			t.Fatalf("table %d: %d rows copied, want 2", i, n)
		}
	}
	if n := count(t, dsn, fmt.Sprintf(`SELECT count(*) FROM t%03d`, tables-1)); n != 2 {
		t.Fatalf("last table holds %d rows, want 2", n)
	}
}

// A backend that dies under a stream (an operator's pg_terminate_backend,
// a failover) fails it with an error the loader retries, never one it
// would take for a poison record, and leaves the connection closed.
func TestCopyPipelinedBackendGone(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	dsn := pgtest.NewDB(t)
	conn := pgtest.Connect(t, ctx, dsn)
	if _, err := conn.Exec(ctx, `CREATE TABLE a (id text PRIMARY KEY, n bigint)`); err != nil {
		t.Fatal(err)
	}
	names := []string{"id", "n"}
	types := []schema.Type{schema.Text, schema.BigInt}
	rows := make([]schema.Row, 20000)
	for i := range rows {
		id := fmt.Sprint("r", i)
		rows[i] = schema.Row{ID: id, Cols: []schema.Col{col("id", vStr(id)), col("n", vInt(int64(i)))}}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := pgtest.Query(t, dsn, `SELECT pg_terminate_backend($1)`, conn.PgConn().PID()); got[0][0] != true {
		t.Fatalf("terminating the backend: %v", got)
	}
	_, failed, err := copyPipelined(ctx, tx, []pipedCopy{{table: pgx.Identifier{"a"}, src: newRowSource(rows, nil, names, types, t0)}})
	if err == nil {
		t.Fatal("a stream to a terminated backend succeeded")
	}
	if IsPoison(err) || !IsRetryable(err) {
		t.Fatalf("error %v (table %d): poison %v, retryable %v; want retryable", err, failed, IsPoison(err), IsRetryable(err))
	}
	t.Logf("stream to a terminated backend: %v (table %d)", err, failed)
	_ = tx.Rollback(context.Background())
	if !conn.IsClosed() {
		t.Fatal("the connection is still open after its backend died")
	}
}

// countingConn counts the writes to a connection.
type countingConn struct {
	net.Conn
	writes, bytes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	c.bytes.Add(int64(len(p)))
	return c.Conn.Write(p)
}

// A stream of many small tables' COPYs goes out in a write per stream or
// per wireFlushBytes, not one (a system call for the loader and one for
// Postgres) per table.
func TestCopyPipelinedWrites(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	cfg, err := pgx.ParseConfig(pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	var writes, bytes atomic.Int64
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		return countingConn{c, &writes, &bytes}, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	names := []string{"id", "n"}
	types := []schema.Type{schema.Text, schema.BigInt}
	const tables = 300
	items := make([]pipedCopy, tables)
	for i := range items {
		if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE TABLE t%03d (id text PRIMARY KEY, n bigint)`, i)); err != nil {
			t.Fatal(err)
		}
		rows := []schema.Row{{ID: "x", Cols: []schema.Col{col("id", vStr("x")), col("n", vInt(1))}}}
		items[i] = pipedCopy{table: pgx.Identifier{fmt.Sprintf("t%03d", i)}, src: newRowSource(rows, nil, names, types, t0)}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w0, b0 := writes.Load(), bytes.Load()
	counts, _, err := copyPipelined(ctx, tx, items)
	w, b := writes.Load()-w0, bytes.Load()-b0
	if err != nil || len(counts) != tables || counts[tables-1] != 1 {
		t.Fatalf("copyPipelined: %v, counts %v", err, counts)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	perStream := pipelineAnswerBytes / copyAnswerBytes(items[0])
	streams := (tables + perStream - 1) / perStream
	if most := int64(streams) + b/wireFlushBytes + 1; w > most {
		t.Errorf("%d tables in %d streams (%d bytes) took %d writes, want at most %d", tables, streams, b, w, most)
	}
	if n := count(t, conn.Config().ConnString(), fmt.Sprintf(`SELECT count(*) FROM t%03d`, tables-1)); n != 1 {
		t.Errorf("last table holds %d rows, want 1", n)
	}
}
