package sink

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
	"github.com/segwarehouse/segwarehouse/schema"
)

var (
	timestamptz = "timestamp with time zone"
	leading     = []pgtest.Column{pc("id", "text"), pc("received_at", timestamptz), pc("uuid_ts", timestamptz)}
)

func pc(name, dataType string) pgtest.Column { return pgtest.Column{Name: name, DataType: dataType} }

func cols(extra ...pgtest.Column) []pgtest.Column {
	return append(append([]pgtest.Column(nil), leading...), extra...)
}

func TestLoadCreatesTablesAndAddsColumns(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)

	// First batch creates the table; types widen over the batch's values.
	load(t, l, build(testOwner, -1,
		rec{off: 0, rows: []schema.TableRow{ev("web", "order_completed", evRow("m1", t0, 0,
			col("user_id", vStr("u1")),
			col("order_id", vStr("o1")),
			col("revenue", vNum("19.99")),
			col("total", vInt(20)),
			col("mixed", vBool(true)),
			col("coupon", schema.Value{}), // null: makes no column
			col("at", vTime(t0.Add(-time.Hour))),
		))}},
		rec{off: 1, rows: []schema.TableRow{ev("web", "order_completed", evRow("m2", t0.Add(time.Second), 1,
			col("total", vNum("20.5")),  // bigint + numeric → numeric
			col("mixed", vStr("maybe")), // boolean + text → text
		))}},
	))
	wantColumns(t, dsn, "web", "order_completed", cols(
		pc("user_id", "text"), pc("order_id", "text"), pc("revenue", "numeric"),
		pc("total", "numeric"), pc("mixed", "text"), pc("at", timestamptz),
	))
	wantRows(t, dsn, [][]any{
		{"m1", "u1", "o1", "19.99", "20", "true", t0.Add(-time.Hour), t0, true},
		{"m2", nil, nil, nil, "20.5", "maybe", nil, t0.Add(time.Second), true},
	}, `SELECT id, user_id, order_id, revenue::text, total::text, mixed, at, received_at, uuid_ts IS NOT NULL
		FROM web.order_completed ORDER BY id`)

	// A later batch appends new columns and casts into the existing ones.
	load(t, l, build(testOwner, 2,
		rec{off: 2, rows: []schema.TableRow{ev("web", "order_completed", evRow("m3", t0.Add(2*time.Second), 2,
			col("total", vInt(7)),
			col("mixed", vInt(42)),
			col("promo", vStr("X")),
			col("wifi", vBool(false)),
		))}},
	))
	wantColumns(t, dsn, "web", "order_completed", cols(
		pc("user_id", "text"), pc("order_id", "text"), pc("revenue", "numeric"),
		pc("total", "numeric"), pc("mixed", "text"), pc("at", timestamptz),
		pc("promo", "text"), pc("wifi", "boolean"),
	))
	wantRows(t, dsn, [][]any{{"m3", "7", "42", "X", false}},
		`SELECT id, total::text, mixed, promo, wifi FROM web.order_completed WHERE id = 'm3'`)
	wantRows(t, dsn, [][]any{{int64(3), "test-owner-a"}}, `SELECT next_offset, 'test-' || owner FROM _segwarehouse.offsets`)
	wantRows(t, dsn, [][]any{{int64(2), `{"web.order_completed": 2}`}, {int64(1), `{"web.order_completed": 1}`}},
		`SELECT records::bigint, rows::text FROM _segwarehouse.loads ORDER BY id`)
}

// SPEC §12 example 8.
func TestLoadCastsIntoExistingColumns(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	load(t, l, build(testOwner, -1, rec{off: 0, rows: []schema.TableRow{
		ev("shop", "viewed", evRow("p1", t0, 0, col("price", vInt(10)))),
	}}))
	load(t, l, build(testOwner, 1,
		rec{off: 1, rows: []schema.TableRow{ev("shop", "viewed", evRow("p2", t0, 1, col("price", vNum("10.75"))))}},
		rec{off: 2, rows: []schema.TableRow{ev("shop", "viewed", evRow("p3", t0, 2, col("price", vStr("abc"))))}},
		rec{off: 3, rows: []schema.TableRow{ev("shop", "viewed", evRow("p4", t0, 3, col("price", vStr("42"))))}},
	))
	wantColumns(t, dsn, "shop", "viewed", cols(pc("price", "bigint")))
	wantRows(t, dsn, [][]any{{"p1", int64(10)}, {"p2", int64(10)}, {"p3", nil}, {"p4", int64(42)}},
		`SELECT id, price FROM shop.viewed ORDER BY id`)
	got := pgtest.Query(t, dsn, `SELECT schema_name, table_name, row_id, column_name, value, reason, received_at, uuid_ts IS NOT NULL
		FROM _segwarehouse.discards`)
	if len(got) != 1 {
		t.Fatalf("discards = %v, want one", got)
	}
	d := got[0]
	if d[0] != "shop" || d[1] != "viewed" || d[2] != "p3" || d[3] != "price" || d[4] != "abc" ||
		!strings.Contains(d[5].(string), "bigint") || !d[6].(time.Time).Equal(t0) || d[7] != true {
		t.Errorf("discard = %v", d)
	}
}

func TestNumericRoundTripsExactly(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	lits := []string{"1e400", "-0.5", "12345678901234567890123", "1.5E-7", "1.50", "0", "-0.0", "1E+2",
		"123456789.123456789e-20", "9223372036854775808", "-9223372036854775809", "3.14159265358979323846264338327950288"}
	var recs []rec
	for i, lit := range lits {
		recs = append(recs, rec{off: int64(i), rows: []schema.TableRow{
			ev("n", "t", evRow(fmt.Sprint(i), t0, int64(i), col("x", vNum(lit)))),
		}})
	}
	load(t, l, build(testOwner, -1, recs...))
	wantColumns(t, dsn, "n", "t", cols(pc("x", "numeric")))
	for i, lit := range lits {
		got := pgtest.Query(t, dsn, `SELECT x::text, x = $2::text::numeric, x::text = $2::text::numeric::text
			FROM n.t WHERE id = $1`, fmt.Sprint(i), lit)
		if len(got) != 1 || got[0][1] != true || got[0][2] != true {
			t.Errorf("%s stored as %v", lit, got)
		}
	}
}

func TestParseNumeric(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		int  string
		exp  int32
		fail bool
	}{
		{in: "1e400", int: "1", exp: 400},
		{in: "-0.5", int: "-5", exp: -1},
		{in: "12345678901234567890123", int: "12345678901234567890123"},
		{in: "1.5E-7", int: "15", exp: -8},
		{in: "1.50", int: "150", exp: -2},
		{in: "42", int: "42"},
		{in: "1e99999999999", fail: true},
		{in: "abc", fail: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			n, err := parseNumeric(tt.in)
			if tt.fail {
				if err == nil {
					t.Fatalf("parseNumeric(%q) = %v, want error", tt.in, n)
				}
				return
			}
			if err != nil || n.Int.String() != tt.int || n.Exp != tt.exp || !n.Valid {
				t.Fatalf("parseNumeric(%q) = %v×10^%d, %v; want %s×10^%d", tt.in, n.Int, n.Exp, err, tt.int, tt.exp)
			}
		})
	}
}

// SPEC §11 and §12 example 12: the first copy wins, across batches (the
// COPY fails on the primary key and the temporary-table path runs) and
// within one; a dropped duplicate's discards are dropped with it.
func TestLoadDedup(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	discard := func(id, v string) schema.Discard {
		return schema.Discard{Schema: "s", Table: "tracks", RowID: id, Column: "x", Value: v, Reason: "test", ReceivedAt: t0}
	}
	load(t, l, build(testOwner, -1, rec{off: 0,
		rows:     []schema.TableRow{ev("s", "tracks", evRow("m1", t0, 0, col("a", vStr("first"))))},
		discards: []schema.Discard{discard("m1", "v1")},
	}))
	load(t, l, build(testOwner, 1,
		rec{off: 1,
			rows:     []schema.TableRow{ev("s", "tracks", evRow("m1", t0, 1, col("a", vStr("second")), col("b", vInt(1))))},
			discards: []schema.Discard{discard("m1", "v2")},
		},
		rec{off: 2,
			rows:     []schema.TableRow{ev("s", "tracks", evRow("m2", t0, 2, col("a", vStr("new"))))},
			discards: []schema.Discard{discard("m2", "v3")},
		},
		rec{off: 3, rows: []schema.TableRow{ev("s", "tracks", evRow("m3", t0, 3, col("a", vStr("in-batch first"))))}},
		rec{off: 4, rows: []schema.TableRow{ev("s", "tracks", evRow("m3", t0, 4, col("a", vStr("in-batch second"))))}},
	))
	wantRows(t, dsn, [][]any{{"m1", "first", nil}, {"m2", "new", nil}, {"m3", "in-batch first", nil}},
		`SELECT id, a, b FROM s.tracks ORDER BY id`)
	wantRows(t, dsn, [][]any{{"m1", "v1"}, {"m2", "v3"}},
		`SELECT row_id, value FROM _segwarehouse.discards ORDER BY row_id`)
	wantRows(t, dsn, [][]any{{`{"s.tracks": 2}`, int64(1)}},
		`SELECT rows::text, discards::bigint FROM _segwarehouse.loads ORDER BY id DESC LIMIT 1`)
	wantRows(t, dsn, [][]any{{int64(5)}}, `SELECT next_offset FROM _segwarehouse.offsets`)
}

// SPEC §12 example 3 and §11: the users row does not depend on the order
// the identifies arrive in, and a null trait never erases a value.
func TestUsersMergeIsOrderIndependent(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	calls := []func(s string) schema.TableRow{
		func(s string) schema.TableRow {
			return userRow(s, "u1", t0, "i1", col("first_time_shopper", vBool(true)), col("name", vStr("Ann")))
		},
		func(s string) schema.TableRow {
			return userRow(s, "u1", t0.Add(time.Minute), "i2", col("total_revenue_180_days", vNum("450.5")), col("name", vStr("Ann B")))
		},
		func(s string) schema.TableRow {
			return userRow(s, "u1", t0.Add(2*time.Minute), "i3", col("name", schema.Value{}), col("plan", vStr("pro")),
				col("first_time_shopper", schema.Value{}))
		},
	}
	perms := [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	type variant struct {
		name  string
		order []int
		split []int // batch sizes
	}
	var variants []variant
	for _, p := range perms {
		variants = append(variants, variant{fmt.Sprint("separate", p), p, []int{1, 1, 1}})
		variants = append(variants, variant{fmt.Sprint("together", p), p, []int{3}})
		variants = append(variants, variant{fmt.Sprint("two_then_one", p), p, []int{2, 1}})
	}
	owner := "merge-owner"
	claim(t, l, owner, 0)
	var off int64
	for vi, v := range variants {
		s := fmt.Sprintf("perm_%d", vi)
		ok := t.Run(v.name, func(t *testing.T) {
			k := 0
			for _, size := range v.split {
				var recs []rec
				for j := 0; j < size; j++ {
					recs = append(recs, rec{off: off, rows: []schema.TableRow{calls[v.order[k]](s)}})
					off++
					k++
				}
				from := recs[0].off
				if from == 0 {
					from = -1
				}
				load(t, l, build(owner, from, recs...))
			}
			wantRows(t, dsn, [][]any{{"u1", true, "450.5", "Ann B", "pro", t0.Add(2 * time.Minute)}},
				fmt.Sprintf(`SELECT id, first_time_shopper, total_revenue_180_days::text, name, plan, received_at FROM %s.users`, s))
		})
		if !ok {
			t.FailNow()
		}
	}
}

// SPEC §12 example 7 and §11 for accounts, including a row that existed
// before the loader (no merge_state): it takes every incoming value.
func TestAccountsMerge(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	acct := func(groupID string, recv time.Time, msgID string, cols ...schema.Col) schema.TableRow {
		row := evRow(groupID, recv, 0, cols...)
		row.Key = schema.MergeKey(recv, msgID)
		return schema.TableRow{Table: schema.TableRef{Schema: "b2b", Table: "accounts"}, Merge: true, Row: row}
	}
	load(t, l, build(testOwner, -1, rec{off: 0, rows: []schema.TableRow{
		acct("g1", t0, "a1", col("user_id", vStr("u1")), col("name", vStr("Initech")), col("employees", vInt(329))),
		acct("g0", t0, "a0", col("user_id", vStr("u0"))),
	}}))
	// Someone's own row, and a row whose merge state is gone: both take
	// every incoming value.
	pgtest.Exec(t, dsn, `INSERT INTO b2b.accounts (id, name, employees, user_id) VALUES ('g9', 'Old', 1, 'u9');
		DELETE FROM b2b.accounts WHERE id = 'g0'`)
	load(t, l, build(testOwner, 1,
		// Older than g1's first call: loses where g1 has a value.
		rec{off: 1, rows: []schema.TableRow{acct("g1", t0.Add(-time.Hour), "a2", col("employees", vInt(300)), col("plan", vStr("gold")))}},
		rec{off: 2, rows: []schema.TableRow{acct("g1", t0.Add(time.Hour), "a3", col("user_id", vStr("u2")))}},
		rec{off: 3, rows: []schema.TableRow{acct("g9", t0, "a4", col("employees", vInt(2)))}},
		rec{off: 4, rows: []schema.TableRow{acct("g0", t0.Add(-time.Hour), "a5", col("name", vStr("Zero")))}},
	))
	wantColumns(t, dsn, "b2b", "accounts", cols(
		pc("user_id", "text"), pc("name", "text"), pc("employees", "bigint"), pc("plan", "text")))
	wantRows(t, dsn, [][]any{
		{"g0", nil, "Zero", nil, nil, t0.Add(-time.Hour)},
		{"g1", "u2", "Initech", int64(329), "gold", t0.Add(time.Hour)},
		{"g9", "u9", "Old", int64(2), nil, t0},
	}, `SELECT id, user_id, name, employees, plan, received_at FROM b2b.accounts ORDER BY id`)
	wantRows(t, dsn, [][]any{{int64(3)}}, `SELECT count(*) FROM b2b.accounts WHERE uuid_ts IS NOT NULL`)
}

// A batch whose offsets fence fails writes nothing at all.
func TestLoadFenced(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		claimBy string // "" = never claimed
		from    int64
		why     string
	}{
		{"wrong owner", "owner-b", -1, `owned by "owner-b", not "owner-a"`},
		{"wrong from", testOwner, 5, "stores next offset none, but the batch starts from 5: the offsets table went back"},
		{"never claimed", "", -1, "never claimed, or the offsets table went back"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, dsn := newLoader(t)
			if tt.claimBy != "" {
				claim(t, l, tt.claimBy, 0)
			}
			b := build(testOwner, tt.from, rec{off: 7,
				rows:     []schema.TableRow{ev("s", "tracks", evRow("m1", t0, 7, col("price", vStr("x")))), userRow("s", "u1", t0, "m1")},
				discards: []schema.Discard{{Schema: "s", Table: "tracks", RowID: "m1", Column: "k", Value: "v", Reason: "r"}},
				rejected: []schema.Rejected{{Pos: schema.Pos{Topic: testTopic, Offset: 7}, Raw: []byte("{"), Reason: "bad JSON"}},
			})
			err := l.Load(ctxT(t), b)
			if err == nil {
				t.Fatal("Load succeeded, want fenced")
			}
			var fe interface{ Fenced() bool }
			if !errors.As(err, &fe) || !fe.Fenced() || !IsFenced(err) || IsPoison(err) || IsRetryable(err) {
				t.Fatalf("error %v: want Fenced only", err)
			}
			if !strings.Contains(err.Error(), tt.why) || !strings.Contains(err.Error(), "events/0") {
				t.Errorf("error %q does not say %q about events/0", err, tt.why)
			}
			for _, table := range []string{"s.tracks", "s.users", "_segwarehouse.discards", "_segwarehouse.rejected",
				"_segwarehouse.loads", "_segwarehouse.merge_state"} {
				if n := count(t, dsn, "SELECT count(*) FROM "+table); n != 0 {
					t.Errorf("%s has %d rows after a fenced load", table, n)
				}
			}
			wantRows(t, dsn, [][]any{{int64(0)}},
				`SELECT count(*) FROM _segwarehouse.offsets WHERE next_offset IS NOT NULL`)
		})
	}
}

// A fence whose stored offset is behind the batch says the offsets table
// went back (this loader's commits are gone); one ahead of the batch (a
// commit whose answer was lost) does not.
func TestLoadFencedWentBack(t *testing.T) {
	t.Parallel()
	l, _ := newLoader(t)
	claim(t, l, testOwner, 0)
	one := func(from, off int64) error {
		id := fmt.Sprint("m", off)
		return l.Load(ctxT(t), build(testOwner, from, rec{off: off, rows: []schema.TableRow{ev("s", "tracks", evRow(id, t0, off))}}))
	}
	if err := one(-1, 4); err != nil {
		t.Fatalf("first load: %v", err)
	}
	for _, tt := range []struct {
		from     int64
		why      string
		wentBack bool
	}{
		{3, "stores next offset 5, but the batch starts from 3", false},
		{9, "stores next offset 5, but the batch starts from 9", true},
	} {
		err := one(tt.from, tt.from)
		if !IsFenced(err) || !strings.Contains(err.Error(), tt.why) {
			t.Fatalf("from %d: error %v, want fenced saying %q", tt.from, err, tt.why)
		}
		if got := strings.Contains(err.Error(), "the offsets table went back"); got != tt.wentBack {
			t.Errorf("from %d: error %q says the offsets table went back: %v, want %v", tt.from, err, got, tt.wentBack)
		}
	}
}

func TestClaim(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	if got := claim(t, l, "a", 0, 1); len(got) != 0 {
		t.Fatalf("first claim = %v, want no stored offsets", got)
	}
	load(t, l, build("a", -1, rec{off: 0}, rec{off: 1}, rec{off: 2}))
	got, err := l.Claim(ctxT(t), testGroup, "b", map[string][]int32{testTopic: {1, 0, 1}, "other": {3}, "none": {}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[testTopic]) != 1 || got[testTopic][0] != 3 {
		t.Fatalf("claim by b = %v, want events/0 at 3 only", got)
	}
	wantRows(t, dsn, [][]any{{"events", int32(0), "b"}, {"events", int32(1), "b"}, {"other", int32(3), "b"}},
		`SELECT topic, partition, owner FROM _segwarehouse.offsets ORDER BY 1, 2`)
	// The old owner is fenced; the new one continues from the stored offset.
	if err := l.Load(ctxT(t), build("a", 3, rec{off: 3})); !IsFenced(err) {
		t.Fatalf("load by the old owner: %v, want fenced", err)
	}
	load(t, l, build("b", 3, rec{off: 3}))
	if got := claim(t, l, "c", 0); got[testTopic][0] != 4 {
		t.Fatalf("claim by c = %v, want 4", got)
	}
}

func TestRejectedAndDiscardsWritten(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	ts := t0.Add(-time.Minute)
	b := build(testOwner, -1,
		rec{off: 0, rejected: []schema.Rejected{
			{Pos: schema.Pos{Topic: testTopic, Offset: 0}, Timestamp: ts, Raw: []byte(`{"type":"track"}`), Reason: "missing event"},
			{Pos: schema.Pos{Topic: testTopic, Offset: 0}, Timestamp: ts, Raw: []byte(`{"type":"nope"}`), Reason: "unknown type"},
		}},
		rec{off: 1, rows: []schema.TableRow{ev("s", "tracks", evRow("m1", t0, 1))},
			discards: []schema.Discard{{Schema: "s", Table: "tracks", RowID: "m1", Column: "名前", Value: "a\x00b\xff", Reason: "no name", ReceivedAt: t0}}},
		rec{off: 2, rejected: []schema.Rejected{{Pos: schema.Pos{Topic: testTopic, Offset: 2}, Raw: nil, Reason: "too large"}}},
	)
	load(t, l, b)
	wantRows(t, dsn, [][]any{
		{"events", int32(0), int64(0), int32(0), ts, []byte(`{"type":"track"}`), "missing event", true},
		{"events", int32(0), int64(0), int32(1), ts, []byte(`{"type":"nope"}`), "unknown type", true},
		{"events", int32(0), int64(2), int32(0), nil, []byte{}, "too large", true},
	}, `SELECT topic, partition, "offset", message, kafka_timestamp, raw, reason, uuid_ts IS NOT NULL
		FROM _segwarehouse.rejected ORDER BY "offset", message`)
	wantRows(t, dsn, [][]any{{"m1", "名前", "ab\uFFFD"}}, `SELECT row_id, column_name, value FROM _segwarehouse.discards`)
	wantRows(t, dsn, [][]any{{int64(3), int64(1), int64(3)}},
		`SELECT o.next_offset, l.discards::bigint, l.rejected::bigint FROM _segwarehouse.offsets o, _segwarehouse.loads l`)
	// The same rows and uuid_ts: one transaction.
	wantRows(t, dsn, [][]any{{int64(1)}}, `SELECT count(DISTINCT uuid_ts) FROM (
		SELECT uuid_ts FROM _segwarehouse.rejected UNION ALL SELECT uuid_ts FROM _segwarehouse.discards
		UNION ALL SELECT uuid_ts FROM s.tracks UNION ALL SELECT uuid_ts FROM _segwarehouse.loads) u`)
}

// A value Postgres refuses (text with NUL, built by hand: the decoder
// strips NULs) or the loader cannot encode (a timestamp past Postgres's
// range) makes the load poison, and nothing is written.
func TestLoadPoison(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		bad   schema.Col
		large bool // enough rows for COPY (in one stream) instead of INSERT
	}{
		{"NUL in text", col("name", vStr("a\x00b")), false},
		{"timestamp out of range", col("at", vTime(time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC))), false},
		{"NUL in text, by COPY", col("name", vStr("a\x00b")), true},
		{"timestamp out of range, by COPY", col("at", vTime(time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC))), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, dsn := newLoader(t)
			claim(t, l, testOwner, 0)
			good := rec{off: 0, rows: []schema.TableRow{ev("s", "tracks", evRow("ok", t0, 0, col("name", vStr("fine")), col("at", vTime(t0))))}}
			if tt.large {
				for i := range smallTableRows + 10 {
					good.rows = append(good.rows, ev("s", "tracks", evRow(fmt.Sprint("ok", i), t0, 0, col("name", vStr("fine")))))
				}
				// A second large table in the same stream.
				good.rows = append(good.rows, ev("s", "a_first", evRow("first", t0, 0, col("x", vStr("y")))))
				for i := range smallTableRows + 10 {
					good.rows = append(good.rows, ev("s", "a_first", evRow(fmt.Sprint("f", i), t0, 0)))
				}
			}
			b := build(testOwner, -1, good, rec{off: 1, rows: []schema.TableRow{
				ev("s", "tracks", evRow("bad", t0, 1, tt.bad)),
			}, rejected: []schema.Rejected{{Pos: schema.Pos{Topic: testTopic, Offset: 1}, Raw: []byte("x"), Reason: "r"}}})
			err := l.Load(ctxT(t), b)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			var pe interface{ Poison() bool }
			if !errors.As(err, &pe) || !pe.Poison() || !IsPoison(err) || IsRetryable(err) || IsFenced(err) {
				t.Fatalf("error %v: want poison", err)
			}
			for _, table := range []string{"s.tracks", "s.a_first", "_segwarehouse.rejected", "_segwarehouse.loads"} {
				if table == "s.a_first" && !tt.large {
					continue
				}
				if n := count(t, dsn, "SELECT count(*) FROM "+table); n != 0 {
					t.Errorf("%s has %d rows after a poison load", table, n)
				}
			}
			wantRows(t, dsn, [][]any{{nil}}, `SELECT next_offset FROM _segwarehouse.offsets`)
			// The loader recovers: the partition loads once the bad record is out.
			load(t, l, build(testOwner, -1, good))
		})
	}
}

// A table someone else created, with column types the loader does not
// use: values are encoded for the real types (pgx learns them), and the
// duplicate path works there too.
func TestLoadIntoForeignTypes(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	pgtest.Exec(t, dsn, `CREATE SCHEMA ext; CREATE TABLE ext.tracks (id varchar(64) PRIMARY KEY, received_at timestamp,
		uuid_ts timestamptz, n integer, j jsonb, f double precision, s varchar(10));
		INSERT INTO ext.tracks (id, s) VALUES ('m0', 'old')`)
	// A large table of the loader's own in the same flush goes by the
	// pipelined COPY, the foreign one by a COPY of its own.
	first := []schema.TableRow{ev("ext", "tracks", evRow("m0", t0, 0, col("s", vStr("dup"))))}
	for i := range smallTableRows + 6 {
		first = append(first, ev("ext", "big", evRow(fmt.Sprint("b", i), t0, 0, col("k", vInt(int64(i))))))
	}
	load(t, l, build(testOwner, -1,
		rec{off: 0, rows: first},
		rec{off: 1, rows: []schema.TableRow{ev("ext", "tracks", evRow("m1", t0, 1,
			col("n", vInt(5)), col("j", vStr(`{"a": [1, 2]}`)), col("f", vNum("1.5")), col("s", vStr("new")), col("extra", vBool(true))))}},
	))
	wantRows(t, dsn, [][]any{{int64(smallTableRows + 6), int64(smallTableRows+5) * int64(smallTableRows+6) / 2}}, `SELECT count(*), sum(k)::bigint FROM ext.big`)
	wantRows(t, dsn, [][]any{
		{"m0", nil, nil, nil, nil, "old", nil, false},
		{"m1", "2024-05-01 12:00:00", int32(5), `{"a": [1, 2]}`, 1.5, "new", true, true},
	}, `SELECT id, received_at::text, n, j::text, f, s, extra, uuid_ts IS NOT NULL FROM ext.tracks ORDER BY id`)
}

// Names are always quoted: a name with a double quote, a space and SQL in
// it is just a name.
func TestHostileIdentifiers(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	const evil = `"; DROP SCHEMA public CASCADE; --`
	s, table, column := evil, `ta"ble `+evil, `co"l `+evil
	load(t, l, build(testOwner, -1, rec{off: 0, rows: []schema.TableRow{
		ev(s, table, evRow("m1", t0, 0, col(column, vStr("v")), col("n", vInt(1)))),
		userRow(s, "u1", t0, "m1", col(column, vStr("trait"))),
	}}))
	load(t, l, build(testOwner, 1, rec{off: 1, rows: []schema.TableRow{
		ev(s, table, evRow("m1", t0, 1, col(column+"2", vStr("dup")))), // duplicate: slow path
		ev(s, table, evRow("m2", t0, 1, col(column+"2", vStr("w")))),
		userRow(s, "u1", t0.Add(time.Second), "m2", col(column, vStr("trait2"))),
	}}))
	wantColumns(t, dsn, s, table, cols(pc(column, "text"), pc("n", "bigint"), pc(column+"2", "text")))
	wantRows(t, dsn, [][]any{{int64(2)}}, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1`, s)
	wantRows(t, dsn, [][]any{{int64(1)}}, `SELECT count(*) FROM pg_namespace WHERE nspname = 'public'`)
	wantRows(t, dsn, [][]any{{"trait2"}}, fmt.Sprintf(`SELECT %s FROM %s`, pgx.Identifier{column}.Sanitize(), pgx.Identifier{s, "users"}.Sanitize()))
}

// Two loaders (two replicas) adding the same new tables and columns at
// once both succeed.
func TestConcurrentLoadersAddSameColumns(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDB(t)
	const rounds = 4
	twoLoaders(t, dsn, func(l *Loader, owner string, part int32) error {
		from := int64(-1)
		for r := 0; r < rounds; r++ {
			bb := schema.NewBatchBuilder(testGroup, owner)
			bb.Start(testTopic, part, from)
			rowCols := []schema.Col{col("id", vStr(fmt.Sprintf("%s-%d", owner, r))), col("received_at", vTime(t0))}
			for c := 0; c <= r; c++ {
				rowCols = append(rowCols, col(fmt.Sprintf("c%d", c), vInt(int64(c))))
			}
			bb.Add(&schema.Decoded{Pos: schema.Pos{Topic: testTopic, Partition: part, Offset: int64(r)}, Rows: []schema.TableRow{
				{Table: schema.TableRef{Schema: "s", Table: "tracks"}, Row: schema.Row{ID: rowCols[0].Val.Str, ReceivedAt: t0, Cols: rowCols}},
				{Table: schema.TableRef{Schema: "s", Table: fmt.Sprintf("t%d", r)}, Row: schema.Row{ID: rowCols[0].Val.Str, ReceivedAt: t0, Cols: rowCols}},
			}})
			if err := l.Load(ctxT(t), bb.Batch()); err != nil {
				return fmt.Errorf("round %d: %w", r, err)
			}
			from = int64(r) + 1
		}
		return nil
	})
	wantColumns(t, dsn, "s", "tracks", cols(pc("c0", "bigint"), pc("c1", "bigint"),
		pc("c2", "bigint"), pc("c3", "bigint")))
	wantRows(t, dsn, [][]any{{int64(2 * rounds)}}, `SELECT count(*) FROM s.tracks`)
}

// A batch with 2,000 new tables, then 2,000 new columns: DDL and
// information_schema reads must not take a round trip per table.
func TestManyTables(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	const n = 2000
	mk := func(off int64, extra string) *schema.Batch {
		var rows []schema.TableRow
		for i := 0; i < n; i++ {
			cs := []schema.Col{col("event", vStr("e")), col("n", vInt(int64(i)))}
			if extra != "" {
				cs = append(cs, col(extra, vBool(true)))
			}
			rows = append(rows, ev("many", fmt.Sprintf("event_%04d", i), evRow(fmt.Sprintf("m%d-%d", off, i), t0, off, cs...)))
		}
		from := off
		if off == 0 {
			from = -1
		}
		return build(testOwner, from, rec{off: off, rows: rows})
	}
	start := time.Now()
	load(t, l, mk(0, ""))
	t.Logf("%d new tables: %v", n, time.Since(start))
	// Each DDL transaction shares its statements with a helper connection.
	rounds := int64((n + maxChangesPerTx - 1) / maxChangesPerTx)
	if got := creators(t, dsn, "many"); got <= rounds {
		t.Errorf("%d tables made by %d transactions; want more than %d (a helper's)", n, got, rounds)
	}
	// A fresh loader (empty cache) adds a column to every table.
	l2 := newLoaderOn(t, dsn)
	start = time.Now()
	load(t, l2, mk(1, "flag"))
	t.Logf("%d new columns, cold cache: %v", n, time.Since(start))
	start = time.Now()
	load(t, l2, mk(2, "flag"))
	t.Logf("%d tables, warm cache: %v", n, time.Since(start))
	wantRows(t, dsn, [][]any{{int64(n)}}, `SELECT count(*) FROM information_schema.columns WHERE table_schema = 'many' AND column_name = 'flag'`)
	// ALTERs stay in the transaction holding the DDL lock (see execDDL).
	if got := count(t, dsn, `SELECT count(DISTINCT a.xmin::text) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
		WHERE c.relnamespace = 'many'::regnamespace AND a.attname = 'flag'`); got != rounds {
		t.Errorf("%d columns added by %d transactions; want %d, one per round", n, got, rounds)
	}
	wantRows(t, dsn, [][]any{{int64(3)}}, `SELECT count(*) FROM many.event_1999`)
}

// Two loaders merging the same users at once: the advisory lock makes the
// merges take turns, so the value with the greatest key wins whichever
// transaction commits last.
func TestConcurrentMerges(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDB(t)
	const rounds, users = 6, 50
	twoLoaders(t, dsn, func(l *Loader, owner string, part int32) error {
		i := int(part)
		from := int64(-1)
		for r := 0; r < rounds; r++ {
			bb := schema.NewBatchBuilder(testGroup, owner)
			bb.Start(testTopic, part, from)
			// Loader a's calls are older in even rounds, newer in odd
			// ones; the winner per user is the last round's newer call.
			recv := t0.Add(time.Duration(2*r+(i+r)%2) * time.Second)
			var rows []schema.TableRow
			for u := 0; u < users; u++ {
				rows = append(rows, userRow("s", fmt.Sprintf("u%02d", u), recv, fmt.Sprintf("%s-%d-%d", owner, r, u),
					col("x", vStr(fmt.Sprintf("%s-%d", owner, r))), col("by_"+owner, vInt(int64(r)))))
			}
			bb.Add(&schema.Decoded{Pos: schema.Pos{Topic: testTopic, Partition: part, Offset: int64(r)}, Rows: rows})
			if err := l.Load(ctxT(t), bb.Batch()); err != nil {
				return fmt.Errorf("round %d: %w", r, err)
			}
			from = int64(r) + 1
		}
		return nil
	})
	// Last round (5): (i+5)%2 makes a's call 1 s newer than b's.
	wantRows(t, dsn, [][]any{{"a-5", int64(rounds - 1), int64(rounds - 1), int64(users)}},
		`SELECT x, max(by_a), max(by_b), count(*) FROM s.users GROUP BY x`)
}

// A table with more rows than smallTableRows goes by COPY; a producer
// duplicate among them aborts the fast path, and the flush is written again
// with per-table dedup: the first copy wins, the duplicate's discards go
// with it, the other rows and tables load.
func TestLoadDedupLargeTableByCopy(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	claim(t, l, testOwner, 0)
	n := smallTableRows + 36
	var first []rec
	for i := 0; i < n; i++ {
		first = append(first, rec{off: int64(i), rows: []schema.TableRow{
			ev("s", "big", evRow(fmt.Sprintf("m%03d", i), t0, int64(i), col("v", vStr("first"))))}})
	}
	load(t, l, build(testOwner, -1, first...))
	var second []rec
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("m%03d", n+i)
		if i == 7 {
			id = "m007" // loaded in the first flush
		}
		second = append(second, rec{off: int64(n + i),
			rows: []schema.TableRow{
				ev("s", "big", evRow(id, t0, int64(n+i), col("v", vStr("second")))),
				ev("s", "other", evRow(id, t0, int64(n+i), col("w", vInt(int64(i))))),
			},
			discards: []schema.Discard{{Schema: "s", Table: "big", RowID: id, Column: "x", Value: "d", Reason: "test", ReceivedAt: t0}},
		})
	}
	load(t, l, build(testOwner, int64(n), second...))
	wantRows(t, dsn, [][]any{{int64(2*n - 1), int64(2*n - 1)}}, `SELECT count(*), count(DISTINCT id) FROM s.big`)
	wantRows(t, dsn, [][]any{{"first"}}, `SELECT v FROM s.big WHERE id = 'm007'`)
	wantRows(t, dsn, [][]any{{int64(n)}}, `SELECT count(*) FROM s.other`)
	wantRows(t, dsn, [][]any{{int64(n - 1)}}, `SELECT count(*) FROM _segwarehouse.discards WHERE table_name = 'big'`)
	wantRows(t, dsn, [][]any{{int64(2 * n)}}, `SELECT next_offset FROM _segwarehouse.offsets`)
}

// Small tables go into the pipelined COPY streams on the fast path, and
// by pipelined INSERT batches (the next built while Postgres runs the
// previous one) when a producer duplicate sends the flush to the dedup
// path; the traces tell which. Over several streams and batches, rows of
// one table with different columns (a column absent, NULL or an empty
// string) keep their values, a column added between flushes gets new
// statements, and a producer duplicate in a later batch is dropped with
// its discards while its table's other rows load.
func TestSmallTables(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDB(t)
	recorder := tracetest.NewSpanRecorder()
	l, err := New(ctxT(t), testConfig(dsn), testLogger(t), WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))))
	if err != nil {
		t.Fatalf("sink.New: %v", err)
	}
	t.Cleanup(l.Close)
	// spans returns, per name, the segwarehouse.tables attribute of the
	// spans ended since the last call.
	seen := 0
	spans := func() map[string][]int64 {
		ended := recorder.Ended()
		out := make(map[string][]int64)
		for _, s := range ended[seen:] {
			for _, a := range s.Attributes() {
				if a.Key == "segwarehouse.tables" {
					out[s.Name()] = append(out[s.Name()], a.Value.AsInt64())
				}
			}
		}
		seen = len(ended)
		return out
	}
	claim(t, l, testOwner, 0)
	tables := 2*insertChunkTables + 7
	table := func(i int) string { return fmt.Sprintf("ev_%03d", i) }
	var first []rec
	for i := 0; i < tables; i++ {
		first = append(first, rec{off: int64(i), rows: []schema.TableRow{
			ev("s", table(i), evRow(fmt.Sprintf("a%d", i), t0, int64(i),
				col("n", vInt(int64(i))), col("s", vStr("x")), col("at", vTime(t0.Add(time.Duration(i)*time.Second))))),
			ev("s", table(i), evRow(fmt.Sprintf("b%d", i), t0, int64(i),
				col("s", vStr("")), col("f", vBool(i%2 == 0)))),
		}})
	}
	load(t, l, build(testOwner, -1, first...))
	if got := spans(); !slices.Equal(got["segwarehouse.copy_small"], []int64{int64(tables)}) || got["segwarehouse.insert"] != nil {
		t.Errorf("first flush (fast path): spans %v, want segwarehouse.copy_small of %d tables and no insert", got, tables)
	}
	off := int64(tables)
	var second []rec
	for i := 0; i < tables; i++ {
		id := fmt.Sprintf("c%d", i)
		if i == tables-3 {
			id = fmt.Sprintf("a%d", i) // loaded in the first flush, in the last batch
		}
		second = append(second, rec{off: off + int64(i),
			rows: []schema.TableRow{ev("s", table(i), evRow(id, t0, off+int64(i),
				col("n", vInt(-1)), col("amount", vNum("12.5")), col("s", vStr("second")), col("added", vStr("new"))))},
			discards: []schema.Discard{{Schema: "s", Table: table(i), RowID: id, Column: "x", Value: "d", Reason: "test", ReceivedAt: t0}},
		})
	}
	load(t, l, build(testOwner, off, second...))
	if got := spans(); !slices.Equal(got["segwarehouse.insert"], []int64{int64(tables)}) {
		t.Errorf("second flush (a duplicate, dedup path): spans %v, want segwarehouse.insert of %d tables", got, tables)
	}

	for _, i := range []int{0, insertChunkTables + 1, tables - 3, tables - 1} {
		wantRows(t, dsn, [][]any{
			{fmt.Sprintf("a%d", i), fmt.Sprint(i), "x", t0.Add(time.Duration(i) * time.Second), nil, nil},
			{fmt.Sprintf("b%d", i), nil, "", nil, i%2 == 0, nil},
		}, `SELECT id, n::text, s, at, f, added FROM s.`+table(i)+` WHERE id NOT LIKE 'c%' ORDER BY id`)
	}
	wantRows(t, dsn, [][]any{{"-1", "12.5", "second", "new"}}, `SELECT n::text, amount::text, s, added FROM s.`+table(tables-1)+` WHERE id = $1`, fmt.Sprintf("c%d", tables-1))
	wantRows(t, dsn, [][]any{{int64(3*tables - 1)}}, `SELECT sum(n)::bigint FROM (`+unionCounts(tables, table)+`) AS c`)
	wantRows(t, dsn, [][]any{{int64(tables - 1)}}, `SELECT count(*) FROM _segwarehouse.discards`)
	wantRows(t, dsn, [][]any{{"x"}}, `SELECT s FROM s.`+table(tables-3)+` WHERE id = $1`, fmt.Sprintf("a%d", tables-3))
	wantRows(t, dsn, [][]any{{int64(2 * tables)}}, `SELECT next_offset FROM _segwarehouse.offsets`)
}

// unionCounts is a query of every table's row count.
func unionCounts(n int, table func(int) string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = `SELECT count(*) AS n FROM s.` + table(i)
	}
	return strings.Join(parts, " UNION ALL ")
}
