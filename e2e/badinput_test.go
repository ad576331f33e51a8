package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
)

// badCase is one hostile input and where its data must land.
type badCase struct {
	name  string
	recs  []*kgo.Record
	check func(t *testing.T, dsn string)
}

func rec(v string) *kgo.Record { return &kgo.Record{Topic: "bad", Value: []byte(v)} }

// rejected asserts that the record with value prefix p is in the rejected
// table with a reason containing reason.
func rejectedWith(prefix, reason string) func(t *testing.T, dsn string) {
	return func(t *testing.T, dsn string) {
		t.Helper()
		rows := pgtest.Query(t, dsn, `SELECT reason FROM _segwarehouse.rejected WHERE position($1::bytea in raw) = 1 OR ($1 = '' AND length(raw) = 0)`, []byte(prefix))
		if len(rows) != 1 {
			t.Fatalf("want 1 rejected record starting %q, got %d", prefix, len(rows))
		}
		if r := rows[0][0].(string); !strings.Contains(r, reason) {
			t.Errorf("reason %q lacks %q", r, reason)
		}
	}
}

func discardWith(rowID, column, reason string) func(t *testing.T, dsn string) {
	return func(t *testing.T, dsn string) {
		t.Helper()
		rows := pgtest.Query(t, dsn, `SELECT reason FROM _segwarehouse.discards WHERE row_id = $1 AND column_name = $2`, rowID, column)
		if len(rows) != 1 || !strings.Contains(rows[0][0].(string), reason) {
			t.Errorf("discard of %s/%s: %v, want reason with %q", rowID, column, rows, reason)
		}
	}
}

func badCases() []badCase {
	deep := strings.Repeat(`[`, 100000) + strings.Repeat("]", 100000)
	many := make([]string, 5000)
	manyInts := make([]string, 5000)
	for i := range many {
		many[i] = fmt.Sprintf(`"p%04d":%v`, i, i%2 == 0)
		manyInts[i] = fmt.Sprintf(`"p%04d":%d`, i, i)
	}
	var names []*kgo.Record
	for i := 0; i < 2000; i++ {
		names = append(names, rec(fmt.Sprintf(`{"type":"track","messageId":"en-%d","userId":"u","event":"Event Number %d"}`, i, i)))
	}
	long := strings.Repeat("veryLongPropertyName", 15) // 300 bytes
	return []badCase{
		{"invalid JSON", []*kgo.Record{rec(`{"type":"track",,}`)}, rejectedWith(`{"type":"track",,}`, "invalid JSON")},
		{"truncated JSON", []*kgo.Record{rec(`{"type":"track","event":"Trunc`)}, rejectedWith(`{"type":"track","event":"Trunc`, "invalid JSON")},
		{"array", []*kgo.Record{rec(`[1,2,3]`)}, rejectedWith(`[1,2,3]`, "not a JSON object")},
		{"number", []*kgo.Record{rec(`12345`)}, rejectedWith(`12345`, "not a JSON object")},
		{"empty and tombstone", []*kgo.Record{rec(``), {Topic: "bad", Value: nil, Key: []byte("tomb")}}, func(t *testing.T, dsn string) {
			if n := count(t, dsn, `SELECT count(*) FROM _segwarehouse.rejected WHERE length(raw) = 0 AND reason LIKE 'empty record value%'`); n != 2 {
				t.Errorf("empty/tombstone rejected: %d", n)
			}
		}},
		{"unknown type", []*kgo.Record{rec(`{"type":"purchase","userId":"u","messageId":"x1"}`)}, rejectedWith(`{"type":"purchase"`, "unknown type")},
		{"missing fields", []*kgo.Record{
			rec(`{"type":"track","userId":"u","messageId":"mf1"}`), rec(`{"type":"group","userId":"u","messageId":"mf2"}`),
			rec(`{"type":"alias","userId":"u","messageId":"mf3"}`), rec(`{"type":"identify","messageId":"mf4"}`),
		}, func(t *testing.T, dsn string) {
			for id, reason := range map[string]string{"mf1": `without "event"`, "mf2": `without "groupId"`, "mf3": "needs both", "mf4": `without "userId" or "anonymousId"`} {
				if n := count(t, dsn, `SELECT count(*) FROM _segwarehouse.rejected WHERE position($1::bytea in raw) > 0 AND reason LIKE '%'||$2||'%'`, []byte(`"`+id+`"`), reason); n != 1 {
					t.Errorf("%s: %d rejected with %q", id, n, reason)
				}
			}
		}},
		{"10 MB record", []*kgo.Record{rec(`{"type":"track","userId":"u","event":"Huge","properties":{"blob":"` + strings.Repeat("x", 10<<20) + `"}}`)},
			rejectedWith(`{"type":"track","userId":"u","event":"Huge"`, "over the limit")},
		{"100k-deep nesting", []*kgo.Record{rec(`{"type":"track","userId":"u","event":"Deep","properties":` + deep + `}`)},
			rejectedWith(`{"type":"track","userId":"u","event":"Deep"`, "invalid JSON")},
		{"5,000 properties pass the 1,500-column limit", []*kgo.Record{rec(`{"type":"track","userId":"u","messageId":"wide","event":"Wide","properties":{` + strings.Join(many, ",") + `}}`)},
			func(t *testing.T, dsn string) {
				cols := len(pgtest.Columns(t, dsn, "bad", "wide"))
				if cols != 1500 {
					t.Errorf("wide has %d columns", cols)
				}
				d := count(t, dsn, `SELECT count(*) FROM _segwarehouse.discards WHERE row_id = 'wide' AND reason LIKE '%limit of 1500 columns%'`)
				// 1500 columns hold id, received_at, uuid_ts, user_id, timestamp, event, event_text and 1,493 properties.
				if d != 5000-(1500-7) {
					t.Errorf("wide: %d discards", d)
				}
				if v := one(t, dsn, `SELECT p0000 || '|' || p1491 || '|' || p1492 FROM bad.wide`); v != "true|false|true" {
					t.Errorf("wide values %s", v)
				}
			}},
		{"a row wider than a Postgres page", []*kgo.Record{rec(`{"type":"track","userId":"u","messageId":"wider","event":"Wider","properties":{` + strings.Join(manyInts, ",") + `}}`)},
			// 1,493 bigint values need 12 kB, past the 8 kB page: Postgres
			// refuses the row, so the record is isolated and rejected with
			// Postgres's error (its columns were created).
			rejectedWith(`{"type":"track","userId":"u","messageId":"wider"`, "row is too big")},
		{"2,000 event names in one flush", names, func(t *testing.T, dsn string) {
			if n := count(t, dsn, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'bad' AND table_name LIKE 'event_number_%'`); n != 2000 {
				t.Errorf("%d event tables", n)
			}
			if n := count(t, dsn, `SELECT count(*) FROM bad.event_number_1999`); n != 1 {
				t.Errorf("event_number_1999 rows %d", n)
			}
		}},
		{"colliding names, long names, non-ASCII names", []*kgo.Record{rec(`{"type":"track","userId":"u","messageId":"names","event":"Names","properties":{"firstName":"a","first_name":"b","First Name":"c","` + long + `":1,"` + long + `X":2,"名前":"n","ключ":"k"}}`)},
			func(t *testing.T, dsn string) {
				if v := one(t, dsn, `SELECT first_name FROM bad.names`); v != "b" {
					t.Errorf("first_name %s", v)
				}
				var longCols int
				for _, c := range pgtest.Columns(t, dsn, "bad", "names") {
					if strings.HasPrefix(c.Name, "very_long_property_name") {
						longCols++
						if len(c.Name) != 63 {
							t.Errorf("long column %q is %d bytes", c.Name, len(c.Name))
						}
					}
				}
				if longCols != 2 {
					t.Errorf("want 2 distinct long columns, got %d", longCols)
				}
				if n := count(t, dsn, `SELECT count(*) FROM _segwarehouse.discards WHERE row_id = 'names'`); n != 4 {
					t.Errorf("names: %d discards, want firstName, First Name, 名前, ключ", n)
				}
				discardWith("names", "名前", "no ASCII letters")(t, dsn)
			}},
		{"SQL in names", []*kgo.Record{
			rec(`{"type":"track","userId":"u","messageId":"sql1","event":"\"; DROP SCHEMA public CASCADE; --","properties":{"'; DROP TABLE x; --":"v","a\"b":"q","back\\slash":"s"}}`),
			{Topic: "bad", Value: []byte(`{"type":"track","userId":"u","messageId":"sql2","event":"E"}`), Headers: []kgo.RecordHeader{{Key: "x-source", Value: []byte(`"; DROP SCHEMA public CASCADE; --`)}}},
		}, func(t *testing.T, dsn string) {
			if v := one(t, dsn, `SELECT drop_table_x || a_b || back_slash FROM bad.drop_schema_public_cascade`); v != "vqs" {
				t.Errorf("values %s", v)
			}
			if !tableExists(t, dsn, "dropschemapubliccascade", "tracks") {
				t.Errorf("the header-named source schema was not made from the hostile name")
			}
			if n := count(t, dsn, `SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'public'`); n != 1 {
				t.Errorf("public schema is gone")
			}
		}},
		{"reserved words and built-in table names", []*kgo.Record{rec(`{"type":"track","userId":"u","messageId":"res","event":"Users","properties":{"select":1,"user":"x","order":2,"ctid":3}}`)},
			func(t *testing.T, dsn string) {
				if v := one(t, dsn, `SELECT _select || _user || _order || _ctid FROM bad._users`); v != "1x23" {
					t.Errorf("reserved %s", v)
				}
			}},
		{"NUL bytes and invalid UTF-8", []*kgo.Record{rec("{\"type\":\"track\",\"userId\":\"u\",\"messageId\":\"nul\",\"event\":\"Nul\",\"properties\":{\"a\\u0000b\":\"x\\u0000y\",\"bad\":\"z\xff\xfez\",\"k\xffey\":1}}")},
			func(t *testing.T, dsn string) {
				if v := one(t, dsn, `SELECT a_b || '|' || bad || '|' || k_ey FROM bad.nul`); v != "xy|z\uFFFDz|1" {
					t.Errorf("sanitized %q", v)
				}
			}},
		{"numbers beyond int64, float64 and numeric", []*kgo.Record{rec(`{"type":"track","userId":"u","messageId":"num","event":"Num","properties":{"i":123456789012345678901234567890,"f":1e400,"n":-1.5e-400,"x":1e200000}}`)},
			func(t *testing.T, dsn string) {
				wantTypes(t, dsn, "bad", "num", map[string]string{"i": "numeric", "f": "numeric", "n": "numeric", "x": ""})
				if v := one(t, dsn, `SELECT i::text FROM bad.num`); v != "123456789012345678901234567890" {
					t.Errorf("i %s", v)
				}
				if v := one(t, dsn, `SELECT (f = 1e400)::text FROM bad.num`); v != "true" {
					t.Errorf("f %s", v)
				}
				discardWith("num", "x", "numeric")(t, dsn)
			}},
		{"extreme timestamps", []*kgo.Record{rec(`{"type":"track","userId":"u","messageId":"ts","event":"Ts","timestamp":"0001-01-01T00:00:00+14:00","properties":{"late":"9999-12-31T23:59:59-14:00","bad":"2024-02-30T00:00:00Z"}}`)},
			func(t *testing.T, dsn string) {
				wantTypes(t, dsn, "bad", "ts", map[string]string{"late": "timestamp with time zone", "bad": "text", "timestamp": "timestamp with time zone"})
				if v := one(t, dsn, `SELECT to_char(late AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM bad.ts`); v != "10000-01-01" {
					t.Errorf("late %s", v)
				}
			}},
		{"type flips across batches", nil, func(t *testing.T, dsn string) {
			// Loaded by the second phase below.
			if v := fmt.Sprint(pgtest.Query(t, dsn, `SELECT id, flag FROM bad.flip ORDER BY id`)); v != "[[f1 true] [f2 <nil>] [f3 false]]" {
				t.Errorf("flip %s", v)
			}
			discardWith("f2", "flag", "boolean")(t, dsn)
		}},
	}
}

// TestBadInput sends a corpus of hostile records through the loader and
// checks that each lands in rows, discards or rejected exactly as SPEC §8–9
// say, that the loader keeps running and that the partition never stalls.
func TestBadInput(t *testing.T) {
	dsn, ldsn := warehouse(t)
	b := newBroker(t, 1, "bad")
	env := loaderEnv(b, ldsn, "bad")
	env["SEGWH_SOURCE_HEADER"] = "x-source"
	l := startLoader(t, env)
	cases := badCases()
	var all []*kgo.Record
	for _, c := range cases {
		all = append(all, c.recs...)
	}
	all = append(all, rec(`{"type":"track","userId":"u","messageId":"f1","event":"Flip","properties":{"flag":true}}`))
	b.produce(t, all...)
	waitCaughtUp(t, b, dsn, "e2e", 3*time.Minute, "bad")
	b.produce(t,
		rec(`{"type":"track","userId":"u","messageId":"f2","event":"Flip","properties":{"flag":"yes"}}`),
		rec(`{"type":"track","userId":"u","messageId":"f3","event":"Flip","properties":{"flag":"false"}}`),
	)
	waitCaughtUp(t, b, dsn, "e2e", time.Minute, "bad")
	if l.cmd.ProcessState != nil {
		t.Fatalf("the loader exited")
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.check(t, dsn) })
	}
	// Every valid message id reached tracks exactly once.
	if n, d := count(t, dsn, `SELECT count(*) FROM bad.tracks`), count(t, dsn, `SELECT count(DISTINCT id) FROM bad.tracks`); n != d {
		t.Errorf("tracks %d rows, %d ids", n, d)
	}
}
