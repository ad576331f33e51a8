package sink

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
	"github.com/segwarehouse/segwarehouse/schema"
)

// The merges' temporary tables stay with the connection, one per merge
// table: a table that gains a column gets a new one and the older one is
// dropped, rows never survive a commit, and a failed flush leaves none
// behind to be reused.
func TestMergeTempTables(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDB(t)
	cfg := testConfig(dsn)
	cfg.MaxConns = 1 // every flush on the same connection
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := New(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("sink.New: %v", err)
	}
	t.Cleanup(l.Close)
	claim(t, l, testOwner, 0)

	acct := func(groupID string, recv time.Time, msgID string, cols ...schema.Col) schema.TableRow {
		row := evRow(groupID, recv, 0, cols...)
		row.Key = schema.MergeKey(recv, msgID)
		return schema.TableRow{Table: schema.TableRef{Schema: "s", Table: "accounts"}, Merge: true, Row: row}
	}
	// temps returns the names of the merge temporary tables in the
	// database (the loader's one connection holds them), sorted.
	temps := func() []string {
		t.Helper()
		var names []string
		for _, r := range pgtest.Query(t, dsn, `SELECT relname::text FROM pg_class
			WHERE relname LIKE 'segwh\_merge\_%' AND relkind = 'r' AND relpersistence = 't' ORDER BY relname`) {
			names = append(names, r[0].(string))
		}
		return names
	}

	load(t, l, build(testOwner, -1, rec{off: 0, rows: []schema.TableRow{
		userRow("s", "u1", t0, "m1", col("name", vStr("Ann"))),
		acct("g1", t0, "a1", col("name", vStr("Initech"))),
	}}))
	first := temps()
	if len(first) != 2 {
		t.Fatalf("after the first merge: temporary tables %q, want one for users and one for accounts", first)
	}

	// Same shapes: the same tables serve again, and hold no rows from
	// the previous flush: u1, deleted by hand, must not come back.
	pgtest.Exec(t, dsn, `DELETE FROM s.users WHERE id = 'u1'`)
	load(t, l, build(testOwner, 1, rec{off: 1, rows: []schema.TableRow{
		userRow("s", "u2", t0, "m2", col("name", vStr("Bo"))),
	}}))
	if got := temps(); strings.Join(got, ",") != strings.Join(first, ",") {
		t.Fatalf("same shapes: temporary tables %q, want %q again", got, first)
	}
	wantRows(t, dsn, [][]any{{"u2", "Bo"}}, `SELECT id, name FROM s.users ORDER BY id`)

	// users gains a column: a new temporary table for it, the older one
	// gone; accounts' unchanged.
	load(t, l, build(testOwner, 2, rec{off: 2, rows: []schema.TableRow{
		userRow("s", "u1", t0.Add(time.Minute), "m3", col("plan", vStr("pro"))),
		acct("g1", t0.Add(time.Minute), "a2", col("name", vStr("Initrode"))),
	}}))
	second := temps()
	if len(second) != 2 || strings.Join(second, ",") == strings.Join(first, ",") {
		t.Fatalf("after users gained a column: temporary tables %q, want two, one of them new (before: %q)", second, first)
	}
	kept := 0
	for _, n := range second {
		for _, o := range first {
			if n == o {
				kept++
			}
		}
	}
	if kept != 1 {
		t.Fatalf("after users gained a column: temporary tables %q share %d names with %q, want 1 (accounts')", second, kept, first)
	}
	wantRows(t, dsn, [][]any{{"u1", nil, "pro"}, {"u2", "Bo", nil}}, `SELECT id, name, plan FROM s.users ORDER BY id`)
	wantRows(t, dsn, [][]any{{"g1", "Initrode"}}, `SELECT id, name FROM s.accounts`)

	// A flush that fails after its merge (the loads history row refused)
	// rolls back; the connection then holds no temporary table, and the
	// same flush written again merges as if nothing had happened.
	pgtest.Exec(t, dsn, `CREATE TABLE public.fail_loads (x int);
		INSERT INTO public.fail_loads VALUES (1);
		CREATE FUNCTION public.refuse_load() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF EXISTS (SELECT 1 FROM public.fail_loads) THEN RAISE EXCEPTION 'refused by the test'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON _segwarehouse.loads FOR EACH ROW EXECUTE FUNCTION public.refuse_load()`)
	failing := func() *schema.Batch {
		return build(testOwner, 3, rec{off: 3, rows: []schema.TableRow{
			userRow("s", "u2", t0.Add(time.Minute), "m4", col("email", vStr("bo@example.com"))),
		}})
	}
	err = l.Load(ctxT(t), failing())
	if err == nil || !strings.Contains(err.Error(), "refused by the test") {
		t.Fatalf("Load with the loads row refused: %v, want the trigger's error", err)
	}
	if got := temps(); len(got) != 0 {
		t.Fatalf("after a failed flush: temporary tables %q, want none", got)
	}
	pgtest.Exec(t, dsn, `DELETE FROM public.fail_loads`)
	load(t, l, failing())
	if got := temps(); len(got) != 1 {
		t.Fatalf("after the flush written again: temporary tables %q, want one (users')", got)
	}
	wantRows(t, dsn, [][]any{{"u1", nil, "pro", nil}, {"u2", "Bo", nil, "bo@example.com"}},
		`SELECT id, name, plan, email FROM s.users ORDER BY id`)
	wantRows(t, dsn, [][]any{{int64(4)}}, `SELECT next_offset FROM _segwarehouse.offsets`)
}

// A merge table with column types the loader did not make (pgx learns
// them, a COPY of its own) merges beside one of the loader's own (the
// pipelined COPY) in the same flush.
func TestMergeIntoForeignTypes(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	pgtest.Exec(t, dsn, `CREATE SCHEMA m; CREATE TABLE m.users (id varchar(64) PRIMARY KEY, received_at timestamptz,
		uuid_ts timestamptz, plan varchar(20), logins integer)`)
	acct := func(groupID string, recv time.Time, msgID string, cols ...schema.Col) schema.TableRow {
		row := evRow(groupID, recv, 0, cols...)
		row.Key = schema.MergeKey(recv, msgID)
		return schema.TableRow{Table: schema.TableRef{Schema: "m", Table: "accounts"}, Merge: true, Row: row}
	}
	load(t, l, build(testOwner, -1, rec{off: 0, rows: []schema.TableRow{
		userRow("m", "u1", t0, "x1", col("plan", vStr("pro")), col("logins", vInt(3))),
		userRow("m", "u2", t0, "x2", col("plan", vStr("free"))),
		acct("g1", t0, "a1", col("name", vStr("Initech")), col("employees", vInt(329))),
	}}))
	load(t, l, build(testOwner, 1, rec{off: 1, rows: []schema.TableRow{
		userRow("m", "u1", t0.Add(time.Minute), "x3", col("plan", vStr("max"))),
		userRow("m", "u2", t0.Add(-time.Minute), "x4", col("plan", vStr("older")), col("logins", vInt(1))),
		acct("g1", t0.Add(time.Minute), "a2", col("employees", vInt(330))),
	}}))
	wantRows(t, dsn, [][]any{{"u1", "max", int32(3)}, {"u2", "free", int32(1)}}, `SELECT id, plan, logins FROM m.users ORDER BY id`)
	wantRows(t, dsn, [][]any{{"g1", "Initech", int64(330)}}, `SELECT id, name, employees FROM m.accounts`)
}

// decodeBatch decodes recs (topic testTopic, partition 0) with the real
// decoder into one batch whose partition's stored offset is from.
func decodeBatch(t *testing.T, from int64, recs ...schema.Record) *schema.Batch {
	t.Helper()
	d, err := schema.NewDecoder(schema.Config{})
	if err != nil {
		t.Fatal(err)
	}
	bb := schema.NewBatchBuilder(testGroup, testOwner)
	bb.Start(testTopic, 0, from)
	for i := range recs {
		recs[i].Topic = testTopic
		bb.Add(d.Decode(&recs[i]))
	}
	return bb.Batch()
}

// A producer's duplicate identify (same messageId, later Kafka time, other
// traits) is ignored whole (SPEC §11), in users and in the discards too,
// whether it lands in a later flush or in the same one as the first copy.
func TestMergeIgnoresDuplicateCalls(t *testing.T) {
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	first := func(off int64, user string) schema.Record {
		return schema.Record{Offset: off, Timestamp: t0, Value: []byte(
			`{"type":"identify","messageId":"m-` + user + `","userId":"` + user + `","traits":{"plan":"free","age":1}}`)}
	}
	dup := func(off int64, user string) schema.Record {
		return schema.Record{Offset: off, Timestamp: t0.Add(time.Minute), Value: []byte(
			`{"type":"identify","messageId":"m-` + user + `","userId":"` + user + `","traits":{"plan":"pro","email":"x@y","age":"abc"}}`)}
	}
	load(t, l, decodeBatch(t, -1, first(0, "a"))) // users.age becomes bigint
	load(t, l, decodeBatch(t, 1, dup(1, "a")))    // the copy in a later flush
	load(t, l, decodeBatch(t, 2, first(2, "b"), dup(3, "b")))
	wantRows(t, dsn, [][]any{{"m-a", "free", t0}, {"m-b", "free", t0}}, `SELECT id, plan, received_at FROM events.identifies ORDER BY id`)
	wantRows(t, dsn, [][]any{{"a", "free", nil, int64(1), t0}, {"b", "free", nil, int64(1), t0}},
		`SELECT id, plan, email, age, received_at FROM events.users ORDER BY id`)
	wantRows(t, dsn, nil, `SELECT table_name, row_id, value FROM _segwarehouse.discards`)
}

// A users value that fails its cast is a discard and keeps the older
// call's value, whether the two calls land in one flush or in two (SPEC
// §7, §11): the calls of one flush are merged after their values are cast.
func TestMergeFailedCastKeepsOlderValue(t *testing.T) {
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	r := func(off int64, msg, user, age string) schema.Record {
		return schema.Record{Offset: off, Timestamp: t0.Add(time.Duration(off) * time.Minute), Value: []byte(
			`{"type":"identify","messageId":"` + msg + `","userId":"` + user + `","traits":{"age":` + age + `}}`)}
	}
	load(t, l, decodeBatch(t, -1, r(0, "m0", "u0", "1"))) // users.age becomes bigint
	load(t, l, decodeBatch(t, 1, r(1, "i1a", "a", "5")))
	load(t, l, decodeBatch(t, 2, r(2, "i2a", "a", `"abc"`)))
	load(t, l, decodeBatch(t, 3, r(3, "i1b", "b", "5"), r(4, "i2b", "b", `"abc"`)))
	wantRows(t, dsn, [][]any{{"a", int64(5)}, {"b", int64(5)}}, `SELECT id, age FROM events.users WHERE id IN ('a', 'b') ORDER BY id`)
	// Each "abc" is kept as a discard of its users row and of identifies
	// (whose age column is bigint too).
	wantRows(t, dsn, [][]any{{"identifies", "i2a", "abc"}, {"identifies", "i2b", "abc"}, {"users", "a", "abc"}, {"users", "b", "abc"}},
		`SELECT table_name, row_id, value FROM _segwarehouse.discards ORDER BY 1, 2`)
}

// A track sent again in a later flush under another event name is
// ignored whole (SPEC §11): no row in the other event's table, no
// discard, and the flush's loads row does not count it; a new track in
// the same flush loads.
func TestDuplicateTrackUnderAnotherName(t *testing.T) {
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	track := func(off int64, id, event, props string) schema.Record {
		return schema.Record{Offset: off, Timestamp: t0.Add(time.Duration(off) * time.Minute), Value: []byte(
			`{"type":"track","messageId":"` + id + `","userId":"u","event":"` + event + `","properties":` + props + `}`)}
	}
	load(t, l, decodeBatch(t, -1, track(0, "m1", "A", `{"v":1}`)))
	load(t, l, decodeBatch(t, 1, track(1, "m1", "B", `{"v":2,"!!":"x"}`), track(2, "m2", "B", `{"v":3}`)))
	wantRows(t, dsn, [][]any{{"m1", "a"}, {"m2", "b"}}, `SELECT id, event FROM events.tracks ORDER BY id`)
	wantRows(t, dsn, [][]any{{"m1", int64(1)}}, `SELECT id, v FROM events.a`)
	wantRows(t, dsn, [][]any{{"m2", int64(3)}}, `SELECT id, v FROM events.b`)
	wantRows(t, dsn, nil, `SELECT row_id, value FROM _segwarehouse.discards`)
	wantRows(t, dsn, [][]any{{int64(2)}}, `SELECT (rows->>'events.b')::bigint + (rows->>'events.tracks')::bigint FROM _segwarehouse.loads ORDER BY id DESC LIMIT 1`)
}
