package sink

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
	"github.com/segwarehouse/segwarehouse/schema"
)

// manyTablesBatch is a batch on partition part of owner, from offset
// from, with one row (id prefix-i) in each of n tables s.t0000..., and
// then extra.
func manyTablesBatch(owner string, part int32, from int64, s, prefix string, n int, extra ...schema.TableRow) *schema.Batch {
	bb := schema.NewBatchBuilder(testGroup, owner)
	bb.Start(testTopic, part, from)
	off := max(from, 0)
	pos := schema.Pos{Topic: testTopic, Partition: part, Offset: off}
	var rows []schema.TableRow
	for i := 0; i < n; i++ {
		rows = append(rows, ev(s, fmt.Sprintf("t%04d", i), evRow(fmt.Sprintf("%s-%d", prefix, i), t0, off, col("event", vStr("e")), col("n", vInt(int64(i))))))
	}
	rows = append(rows, extra...)
	for i := range rows {
		rows[i].Row.Pos = pos
	}
	bb.Add(&schema.Decoded{Pos: pos, Rows: rows, Messages: 1, Bytes: 100})
	return bb.Batch()
}

// creators counts the transactions that created s's tables.
func creators(t *testing.T, dsn, s string) int64 {
	t.Helper()
	return count(t, dsn, `SELECT count(DISTINCT xmin::text) FROM pg_class WHERE relnamespace = $1::regnamespace AND relkind = 'r'`, s)
}

// With no connection to spare, the DDL transaction runs every statement
// itself.
func TestDDLWithoutSpareConnection(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDB(t)
	cfg := testConfig(dsn)
	cfg.MaxConns = 1
	l, err := New(ctxT(t), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	claim(t, l, testOwner, 0)
	const n = 2 * ddlParallelMin
	load(t, l, manyTablesBatch(testOwner, 0, -1, "solo", "a", n))
	if got := creators(t, dsn, "solo"); got != 1 {
		t.Errorf("%d tables made by %d transactions; want 1", n, got)
	}
	wantRows(t, dsn, [][]any{{int64(n - 1)}}, fmt.Sprintf(`SELECT n FROM solo.t%04d`, n-1))
}

// A statement failing on either connection fails the whole change with
// Postgres's error; what the helper committed stays, and once the cause
// is gone the retry makes only what is missing.
func TestDDLFailureThenRetry(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	const n = 8 * ddlChunk
	// A type named like a table (not a composite type, which is a relation
	// and IF NOT EXISTS would skip): CREATE TABLE cannot make its row type.
	for _, i := range []int{3, n - 3} {
		pgtest.Exec(t, dsn, "CREATE SCHEMA IF NOT EXISTS clash")
		pgtest.Exec(t, dsn, fmt.Sprintf("CREATE TYPE clash.t%04d AS ENUM ('x')", i))
	}
	b := manyTablesBatch(testOwner, 0, -1, "clash", "a", n)
	err := l.Load(ctxT(t), b)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Load: %v; want Postgres's type-exists error", err)
	}
	t.Logf("Load: %v", err)
	made := count(t, dsn, `SELECT count(*) FROM pg_class WHERE relnamespace = 'clash'::regnamespace AND relkind = 'r'`)
	if made >= n-2 {
		t.Errorf("%d tables made despite the failure", made)
	}
	wantRows(t, dsn, [][]any{{int64(0)}}, `SELECT count(*) FROM _segwarehouse.loads`)
	pgtest.Exec(t, dsn, fmt.Sprintf("DROP TYPE clash.t%04d", 3))
	pgtest.Exec(t, dsn, fmt.Sprintf("DROP TYPE clash.t%04d", n-3))
	load(t, l, manyTablesBatch(testOwner, 0, -1, "clash", "a", n))
	wantRows(t, dsn, [][]any{{int64(n)}}, `SELECT count(*) FROM pg_class WHERE relnamespace = 'clash'::regnamespace AND relkind = 'r'`)
	var sum strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			sum.WriteString(" UNION ALL ")
		}
		fmt.Fprintf(&sum, "SELECT n FROM clash.t%04d", i)
	}
	wantRows(t, dsn, [][]any{{int64(n), int64(n * (n - 1) / 2)}}, `SELECT count(*), sum(n)::bigint FROM (`+sum.String()+`) x`)
}

// Two loaders creating the same tables at once, each with a helper
// connection: the DDL lock, held by each transaction while its helper
// works, keeps them from racing; the second finds the tables made.
func TestConcurrentLoadersCreateManyTables(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDB(t)
	const n = 4 * ddlParallelMin
	twoLoaders(t, dsn, func(l *Loader, owner string, part int32) error {
		return l.Load(ctxT(t), manyTablesBatch(owner, part, -1, "race", owner, n))
	})
	if got := creators(t, dsn, "race"); got < 2 {
		t.Errorf("%d tables made by %d transactions; want a helper's too", n, got)
	}
	wantRows(t, dsn, [][]any{{int64(2), int64(2)}}, fmt.Sprintf(`SELECT count(*), count(DISTINCT id) FROM race.t%04d`, n-1))
	wantRows(t, dsn, [][]any{{int64(n)}}, `SELECT count(*) FROM pg_class WHERE relnamespace = 'race'::regnamespace AND relkind = 'r'`)
}

func TestChunkStatements(t *testing.T) {
	got := chunkStatements([]string{"a", "b", "c", "d", "e"}, 2)
	want := []string{"a;\nb", "c;\nd", "e"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("chunkStatements: %q; want %q", got, want)
	}
	if got := chunkStatements(nil, 2); len(got) != 0 {
		t.Errorf("chunkStatements(nil): %q", got)
	}
}

// An ALTER TABLE waiting for an analyst's lock runs in the transaction
// holding the DDL lock, never in the helper: there the holder would sit
// idle in its transaction and Postgres's idle timeout would end its
// session (and release the DDL lock) while the helper still worked.
func TestDDLAlterWaitsInHolder(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDB(t)
	cfg := testConfig(dsn)
	cfg.IdleInTxTimeout = time.Second
	l, err := New(ctxT(t), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	claim(t, l, testOwner, 0)
	load(t, l, build(testOwner, -1, rec{off: 0, rows: []schema.TableRow{ev("s", "t", evRow("m1", t0, 0, col("n", vInt(7))))}}))

	analyst, err := pgx.Connect(ctxT(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer analyst.Close(context.Background())
	if _, err := analyst.Exec(ctxT(t), "BEGIN; LOCK TABLE s.t IN ACCESS SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	// The row that needs a column on the locked table comes last, so its
	// ALTER would be among the last statements handed out.
	const n = 4 * ddlParallelMin
	released := make(chan error, 1)
	go func() {
		// The ALTER waits longer than the idle timeout, and until the
		// helper has committed the new tables (a fixed wait lost that
		// race on a loaded CI machine); 30 s at most, so that a helper
		// that never commits fails the assertions below, not the run.
		time.Sleep(2500 * time.Millisecond)
		// (Read committed: each statement of the analyst's transaction
		// sees what committed before it.)
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var made int
			err := analyst.QueryRow(context.Background(), `SELECT count(*) FROM pg_class
				WHERE relnamespace = 's'::regnamespace AND relkind = 'r' AND relname <> 't'`).Scan(&made)
			if err != nil || made >= n {
				break
			}
		}
		_, err := analyst.Exec(context.Background(), "COMMIT")
		released <- err
	}()
	b := manyTablesBatch(testOwner, 0, 1, "s", "b", n, ev("s", "t", evRow("m2", t0, 1, col("n", vInt(8)), col("extra", vStr("e")))))
	if err := l.Load(ctxT(t), b); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	wantColumns(t, dsn, "s", "t", cols(pc("n", "bigint"), pc("extra", "text")))
	wantRows(t, dsn, [][]any{{"m2", "e"}}, `SELECT id, extra FROM s.t WHERE extra IS NOT NULL`)
	// While the holder waited with its ALTER, the helper made the tables.
	if got := count(t, dsn, `SELECT count(*) FROM pg_class c WHERE c.relnamespace = 's'::regnamespace AND c.relkind = 'r' AND c.relname <> 't'
		AND c.xmin::text = (SELECT a.xmin::text FROM pg_attribute a WHERE a.attrelid = 's.t'::regclass AND a.attname = 'extra')`); got != 0 {
		t.Errorf("%d of the %d new tables made by the transaction that waited to add the column; want 0 (the helper made them)", got, n)
	}
	wantRows(t, dsn, [][]any{{int64(n + 1)}}, `SELECT count(*) FROM pg_class WHERE relnamespace = 's'::regnamespace AND relkind = 'r'`)
}
