package sink

import (
	"testing"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
	"github.com/segwarehouse/segwarehouse/schema"
)

// loaderWithTable returns a loader owning partition 0 whose first record
// (offset 0) made s.t with a bigint column n: m1, n = 7.
func loaderWithTable(t *testing.T) (*Loader, string) {
	t.Helper()
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	load(t, l, build(testOwner, -1, rec{off: 0, rows: []schema.TableRow{ev("s", "t", evRow("m1", t0, 0, col("n", vInt(7))))}}))
	return l, dsn
}

// TestPrepareAhead prepares a batch before loading it, as the consumer does
// while the previous flush is in Postgres: a new table is created in
// Prepare, the values are cast then, and Load writes them with the
// prepared picture.
func TestPrepareAhead(t *testing.T) {
	t.Parallel()
	l, dsn := loaderWithTable(t)
	b := build(testOwner, 1,
		rec{off: 1, rows: []schema.TableRow{
			ev("s", "t", evRow("m2", t0, 1, col("n", vStr("x")))),
			ev("s", "fresh", evRow("m2", t0, 1, col("f", vNum("1.5")))),
		}},
	)
	if err := l.Prepare(ctxT(t), b); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if b.Prepared == nil {
		t.Fatal("Prepare left nothing on the batch")
	}
	// The new table exists before Load; the value "x" cannot be a bigint
	// and is already a discard.
	wantColumns(t, dsn, "s", "fresh", cols(pc("f", "numeric")))
	if len(b.Discards) != 1 || b.Discards[0].Column != "n" || b.Discards[0].RowID != "m2" {
		t.Errorf("discards after Prepare: %+v; want n of m2", b.Discards)
	}
	load(t, l, b)
	wantRows(t, dsn, [][]any{{"m1", int64(7)}, {"m2", nil}}, `SELECT id, n FROM s.t ORDER BY id`)
	wantRows(t, dsn, [][]any{{"m2", "1.5"}}, `SELECT id, f::text FROM s.fresh`)
	// Small tables' rows get the transaction's uuid_ts.
	wantRows(t, dsn, [][]any{{true, true}}, `SELECT f.uuid_ts = t.uuid_ts, f.uuid_ts > now() - interval '1 minute'
		FROM s.fresh f, s.t t WHERE t.id = 'm2'`)
	wantRows(t, dsn, [][]any{{int64(1)}}, `SELECT count(*) FROM _segwarehouse.discards`)
	wantRows(t, dsn, [][]any{{int64(2)}}, `SELECT next_offset FROM _segwarehouse.offsets`)
}

// TestPrepareLeavesAlterToLoad: a batch that needs a column added to an
// existing table is not prepared ahead (the ALTER would lock a table the
// flush in the air may want); its Load adds the column.
func TestPrepareLeavesAlterToLoad(t *testing.T) {
	t.Parallel()
	l, dsn := loaderWithTable(t)
	b := build(testOwner, 1,
		rec{off: 1, rows: []schema.TableRow{
			ev("s", "t", evRow("m2", t0, 1, col("n", vInt(8)), col("extra", vStr("e")))),
			ev("s", "fresh", evRow("m2", t0, 1, col("f", vNum("1.5")))),
		}},
	)
	if err := l.Prepare(ctxT(t), b); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if b.Prepared != nil {
		t.Error("a batch needing ALTER TABLE was prepared ahead")
	}
	wantColumns(t, dsn, "s", "t", cols(pc("n", "bigint")))
	if n := count(t, dsn, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 's' AND table_name = 'fresh'`); n != 0 {
		t.Errorf("Prepare created s.fresh though the batch was left to Load")
	}
	load(t, l, b)
	wantColumns(t, dsn, "s", "t", cols(pc("n", "bigint"), pc("extra", "text")))
	wantRows(t, dsn, [][]any{{"m1", nil}, {"m2", "e"}}, `SELECT id, extra FROM s.t ORDER BY id`)
	wantRows(t, dsn, [][]any{{"m2", "1.5"}}, `SELECT id, f::text FROM s.fresh`)
}

// TestPrepareStale prepares a batch, then a failed Load makes the loader
// forget its tables (someone dropped one): the prepared picture is stale,
// and Load prepares the batch again instead of writing with it.
func TestPrepareStale(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	b := build(testOwner, -1, rec{off: 0, rows: []schema.TableRow{ev("s", "u", evRow("m1", t0, 0, col("v", vStr("a"))))}})
	if err := l.Prepare(ctxT(t), b); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	pgtest.Exec(t, dsn, `DROP TABLE s.u`)
	other := build(testOwner, -1, rec{off: 0, rows: []schema.TableRow{ev("s", "u", evRow("m0", t0, 0, col("v", vStr("z"))))}})
	if err := l.Load(ctxT(t), other); err == nil {
		t.Fatal("Load into a dropped table succeeded; want an error that makes the loader forget the table")
	}
	load(t, l, b)
	wantRows(t, dsn, [][]any{{"m1", "a"}}, `SELECT id, v FROM s.u`)
}

// TestPrepareSteadyState: a batch whose tables and columns all exist is
// cast in one pass (schema.ConformKnown), without Plan; one that brings a
// new table is planned, and both load the same way.
func TestPrepareSteadyState(t *testing.T) {
	t.Parallel()
	l, dsn := loaderWithTable(t)
	known := build(testOwner, 1, rec{off: 1, rows: []schema.TableRow{
		ev("s", "t", evRow("m2", t0, 1, col("n", vStr("9")))),
		ev("s", "t", evRow("m3", t0, 1, col("n", vStr("nine")))),
	}})
	if err := l.Prepare(ctxT(t), known); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if p, _ := known.Prepared.(*picture); p == nil || !p.conformed {
		t.Fatalf("a batch needing no DDL was not conformed in one pass: %+v", known.Prepared)
	}
	if len(known.Discards) != 1 || known.Discards[0].RowID != "m3" {
		t.Errorf("discards after Prepare: %+v; want n of m3", known.Discards)
	}
	load(t, l, known)
	fresh := build(testOwner, 2, rec{off: 2, rows: []schema.TableRow{
		ev("s", "t", evRow("m4", t0, 2, col("n", vStr("x")))),
		ev("s", "fresh2", evRow("m4", t0, 2, col("f", vInt(1)))),
	}})
	if err := l.Prepare(ctxT(t), fresh); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if p, _ := fresh.Prepared.(*picture); p == nil || p.conformed {
		t.Fatalf("a batch with a new table was not planned: %+v", fresh.Prepared)
	}
	if len(fresh.Discards) != 1 || fresh.Discards[0].RowID != "m4" {
		t.Errorf("discards after Prepare: %+v; want n of m4, once", fresh.Discards)
	}
	load(t, l, fresh)
	wantRows(t, dsn, [][]any{{"m1", int64(7)}, {"m2", int64(9)}, {"m3", nil}, {"m4", nil}}, `SELECT id, n FROM s.t ORDER BY id`)
	wantRows(t, dsn, [][]any{{int64(2)}}, `SELECT count(*) FROM _segwarehouse.discards`)
}
