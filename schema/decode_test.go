package schema

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

var kafkaTS = time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)

func decodeJSON(t *testing.T, cfg Config, topic, js string) *Decoded {
	t.Helper()
	d, err := NewDecoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d.Decode(&Record{Topic: topic, Partition: 2, Offset: 41, Timestamp: kafkaTS, Value: []byte(js)})
}

// rowsOf returns the decoded rows of a table as column → value.
func rowsOf(d *Decoded, table string) []map[string]Value {
	var out []map[string]Value
	for _, r := range d.Rows {
		if r.Table.Table != table {
			continue
		}
		m := make(map[string]Value, len(r.Row.Cols))
		for _, c := range r.Row.Cols {
			m[c.Name] = c.Val
		}
		out = append(out, m)
	}
	return out
}

func oneRow(t *testing.T, d *Decoded, table string) map[string]Value {
	t.Helper()
	rows := rowsOf(d, table)
	if len(rows) != 1 {
		t.Fatalf("table %s: want 1 row, got %d (rows: %+v, rejected: %+v)", table, len(rows), d.Rows, d.Rejected)
	}
	return rows[0]
}

func tables(d *Decoded) string {
	var s []string
	for _, r := range d.Rows {
		s = append(s, r.Table.String())
	}
	return strings.Join(s, ",")
}

func wantCol(t *testing.T, row map[string]Value, col string, typ Type, text string) {
	t.Helper()
	v, ok := row[col]
	if !ok {
		t.Errorf("column %s missing (have %v)", col, keys(row))
		return
	}
	if v.Type() != typ {
		t.Errorf("column %s: type %s, want %s", col, v.Type(), typ)
	}
	if got := v.Text(); got != text {
		t.Errorf("column %s: %q, want %q", col, got, text)
	}
}

func noCol(t *testing.T, row map[string]Value, cols ...string) {
	t.Helper()
	for _, c := range cols {
		if _, ok := row[c]; ok {
			t.Errorf("column %s should not exist", c)
		}
	}
}

func keys(m map[string]Value) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// SPEC §12 examples, at the decoder's level (the e2e tests check them in
// Postgres).
func TestSpecExample1TrackOrderCompleted(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"type":"track","messageId":"m1","userId":"u1","event":"Order Completed","properties":{"orderId":"o1","revenue":19.99,"total":20,"coupon":null}}`)
	if got := tables(d); got != "web.tracks,web.order_completed" {
		t.Fatalf("tables %s", got)
	}
	tr := oneRow(t, d, "tracks")
	wantCol(t, tr, "event", Text, "order_completed")
	wantCol(t, tr, "event_text", Text, "Order Completed")
	wantCol(t, tr, "id", Text, "m1")
	wantCol(t, tr, "user_id", Text, "u1")
	noCol(t, tr, "order_id", "revenue", "total", "coupon", "anonymous_id", "uuid_ts")
	ev := oneRow(t, d, "order_completed")
	wantCol(t, ev, "order_id", Text, "o1")
	wantCol(t, ev, "revenue", Numeric, "19.99")
	wantCol(t, ev, "total", BigInt, "20")
	wantCol(t, ev, "event", Text, "order_completed")
	noCol(t, ev, "coupon")
}

func TestSpecExample2Register(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u1","event":"Register","properties":{"plan":"Pro Annual","accountType":"Facebook"}}`)
	ev := oneRow(t, d, "register")
	wantCol(t, ev, "plan", Text, "Pro Annual")
	wantCol(t, ev, "account_type", Text, "Facebook")
}

func TestSpecExample3And4Identify(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"type":"identify","messageId":"i1","userId":"u1","traits":{"first_time_shopper":true}}`)
	wantCol(t, oneRow(t, d, "identifies"), "first_time_shopper", Boolean, "true")
	u := oneRow(t, d, "users")
	wantCol(t, u, "id", Text, "u1")
	wantCol(t, u, "first_time_shopper", Boolean, "true")
	noCol(t, u, "anonymous_id", "sent_at", "timestamp", "original_timestamp", "user_id")
	if d.Rows[1].Row.Key == "" || !d.Rows[1].Merge {
		t.Fatalf("users row must be a merge row with a key: %+v", d.Rows[1])
	}

	anon := decodeJSON(t, Config{}, "web", `{"type":"identify","anonymousId":"a1","traits":{"x":1}}`)
	if got := tables(anon); got != "web.identifies" {
		t.Fatalf("anonymous identify wrote %s", got)
	}
	wantCol(t, oneRow(t, anon, "identifies"), "anonymous_id", Text, "a1")
}

func TestSpecExample5Arrays(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","event":"E","properties":{"products":[{"sku":"s1"}],"tags":["x", "y"],"empty":[],"obj":{}}}`)
	ev := oneRow(t, d, "e")
	wantCol(t, ev, "products", Text, `[{"sku":"s1"}]`)
	wantCol(t, ev, "tags", Text, `["x","y"]`)
	wantCol(t, ev, "empty", Text, `[]`)
	noCol(t, ev, "obj")
}

// An array's text is JSON whatever its strings hold (SPEC §5, §7): control
// characters as JSON escapes, not Go's; NUL dropped as from any text (so
// that Postgres's jsonb takes it); other characters as they are. The
// strings read back as sent, less the NUL.
func TestArrayTextIsJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`["a\u0001b"]`, `["a\u0001b"]`},
		{`["tab\there \u0007 \u000b \u001f"]`, `["tab\there \u0007 \u000b \u001f"]`},
		{`["\u007f\"x", "\\"]`, "[\"\u007f\\\"x\",\"\\\\\"]"},
		{`["nul\u0000here", "\n\r\b\f"]`, `["nulhere","\n\r\u0008\u000c"]`},
		{`["\udbff\udfff \u00ad é"]`, "[\"\U0010ffff \u00ad é\"]"},
		{`[{"k\u0002": ["\u0003"]}]`, `[{"k\u0002":["\u0003"]}]`},
	} {
		d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","event":"E","properties":{"tags":`+tc.in+`}}`)
		got := oneRow(t, d, "e")["tags"].Str
		if got != tc.want {
			t.Errorf("%s: stored %q, want %q", tc.in, got, tc.want)
		}
		var back, sent any
		if err := json.Unmarshal([]byte(got), &back); err != nil {
			t.Errorf("%s: stored %q is not JSON: %v", tc.in, got, err)
			continue
		}
		_ = json.Unmarshal([]byte(strings.ReplaceAll(tc.in, `\u0000`, ``)), &sent)
		if !reflect.DeepEqual(back, sent) {
			t.Errorf("%s: stored %q reads back as %#v, want %#v", tc.in, got, back, sent)
		}
	}
}

func TestSpecExample6Context(t *testing.T) {
	t.Parallel()
	ctx := `"context":{"app":{"version":"1.0"},"userAgent":"UA","network":{"wifi":true},"screen":{"density":2.5},"traits":{"email":"a@b.c"}}`
	for _, js := range []string{
		`{"type":"track","userId":"u","event":"E",` + ctx + `}`,
		`{"type":"identify","userId":"u",` + ctx + `}`,
		`{"type":"page","userId":"u",` + ctx + `}`,
		`{"type":"screen","userId":"u",` + ctx + `}`,
		`{"type":"group","userId":"u","groupId":"g",` + ctx + `}`,
		`{"type":"alias","userId":"u","previousId":"p",` + ctx + `}`,
	} {
		d := decodeJSON(t, Config{}, "web", js)
		if len(d.Rows) == 0 {
			t.Fatalf("%s: no rows: %+v", js, d.Rejected)
		}
		for _, r := range d.Rows {
			row := oneRow(t, &Decoded{Rows: []TableRow{r}}, r.Table.Table)
			wantCol(t, row, "context_app_version", Text, "1.0")
			wantCol(t, row, "context_user_agent", Text, "UA")
			wantCol(t, row, "context_network_wifi", Boolean, "true")
			wantCol(t, row, "context_screen_density", Numeric, "2.5")
			wantCol(t, row, "context_traits_email", Text, "a@b.c")
			noCol(t, row, "email")
		}
	}
}

func TestSpecExample7Group(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"type":"group","messageId":"g-1","userId":"u1","groupId":"g1","traits":{"name":"Initech","employees":329}}`)
	g := oneRow(t, d, "groups")
	wantCol(t, g, "group_id", Text, "g1")
	wantCol(t, g, "name", Text, "Initech")
	wantCol(t, g, "employees", BigInt, "329")
	a := oneRow(t, d, "accounts")
	wantCol(t, a, "id", Text, "g1")
	wantCol(t, a, "user_id", Text, "u1")
	wantCol(t, a, "name", Text, "Initech")
	noCol(t, a, "anonymous_id", "timestamp", "group_id")
}

func TestSpecExample9NullMakesNoColumn(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","event":"E","properties":{"promo":null}}`)
	noCol(t, oneRow(t, d, "e"), "promo")
}

func TestSpecExample10ReservedAndFixed(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","event":"E","properties":{"id":"p9","user":"bob","tag":"x","language":"en"}}`)
	ev := oneRow(t, d, "e")
	wantCol(t, ev, "_id", Text, "p9")
	wantCol(t, ev, "_user", Text, "bob")
	wantCol(t, ev, "_tag", Text, "x")
	wantCol(t, ev, "language", Text, "en")
	wantCol(t, ev, "id", Text, "kafka:web:2:41")
}

func TestSpecExample11TimestampSkew(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","event":"E","originalTimestamp":"2024-01-01T12:00:00Z","sentAt":"2024-01-01T12:00:05Z","receivedAt":"2024-01-01T12:00:10Z"}`)
	tr := oneRow(t, d, "tracks")
	wantCol(t, tr, "timestamp", Timestamptz, "2024-01-01T12:00:05Z")
	wantCol(t, tr, "received_at", Timestamptz, "2024-01-01T12:00:10Z")
	wantCol(t, tr, "original_timestamp", Timestamptz, "2024-01-01T12:00:00Z")
	wantCol(t, tr, "sent_at", Timestamptz, "2024-01-01T12:00:05Z")
}

func TestSpecExample13Routing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		integ string
		id    string
		load  bool
	}{
		{"warehouses all false", `{"Warehouses":{"all":false}}`, "", false},
		{"All false still loads", `{"All":false}`, "", true},
		{"listed id", `{"Warehouses":{"warehouseIds":["wh1","wh2"]}}`, "wh2", true},
		{"other id", `{"Warehouses":{"warehouseIds":["wh1"]}}`, "wh2", false},
		{"no integrations", `{}`, "", true},
		{"all true", `{"Warehouses":{"all":true}}`, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := decodeJSON(t, Config{WarehouseID: c.id}, "web", `{"type":"track","userId":"u","event":"E","integrations":`+c.integ+`}`)
			if loaded := len(d.Rows) > 0; loaded != c.load {
				t.Fatalf("loaded=%v want %v (%+v)", loaded, c.load, d)
			}
			if !c.load && d.Skipped != 1 {
				t.Fatalf("skipped=%d", d.Skipped)
			}
			if len(d.Rejected) != 0 {
				t.Fatalf("rejected: %+v", d.Rejected)
			}
		})
	}
}

func TestSpecExample14HostileEventName(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","event":"\"; DROP TABLE users; --"}`)
	if got := tables(d); got != "web.tracks,web.drop_table_users" {
		t.Fatalf("tables %s", got)
	}
	wantCol(t, oneRow(t, d, "tracks"), "event_text", Text, `"; DROP TABLE users; --`)
}

func TestEventTableNames(t *testing.T) {
	t.Parallel()
	cases := map[string]string{"Users": "_users", "101 Account Update": "_101_account_update", "tracks": "_tracks"}
	for ev, table := range cases {
		d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","event":"`+ev+`"}`)
		if len(d.Rows) != 2 || d.Rows[1].Table.Table != table {
			t.Errorf("%q: tables %s, want event table %s", ev, tables(d), table)
		}
	}
	d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","event":"101 Account Update"}`)
	wantCol(t, oneRow(t, d, "tracks"), "event", Text, "101_account_update")
}

func TestPageNameAndCategoryWin(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"type":"page","messageId":"p1","anonymousId":"a","name":"Home","properties":{"name":"ignored","category":"Docs","url":"https://x"}}`)
	p := oneRow(t, d, "pages")
	wantCol(t, p, "name", Text, "Home")
	wantCol(t, p, "category", Text, "Docs")
	wantCol(t, p, "url", Text, "https://x")
	if len(d.Discards) != 1 || d.Discards[0].Column != "name" || d.Discards[0].Value != "ignored" {
		t.Fatalf("want the shadowed properties.name as a discard, got %+v", d.Discards)
	}
}

func TestKeyCollisionLastSortedWins(t *testing.T) {
	t.Parallel()
	// "firstName" < "first_name" in byte order, so first_name wins.
	for _, js := range []string{
		`{"firstName":"A","first_name":"B"}`,
		`{"first_name":"B","firstName":"A"}`,
	} {
		d := decodeJSON(t, Config{}, "web", `{"type":"identify","userId":"u","messageId":"x","traits":`+js+`}`)
		wantCol(t, oneRow(t, d, "identifies"), "first_name", Text, "B")
		if len(d.Discards) != 1 || d.Discards[0].Column != "firstName" || d.Discards[0].Value != "A" || d.Discards[0].Table != "identifies" {
			t.Fatalf("%s: discards %+v", js, d.Discards)
		}
	}
}

func TestUnnamedKeyIsDiscarded(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","messageId":"m","event":"E","properties":{"名前":"x","ok":1}}`)
	ev := oneRow(t, d, "e")
	wantCol(t, ev, "ok", BigInt, "1")
	if len(d.Discards) != 1 || d.Discards[0].Column != "名前" || d.Discards[0].Value != "x" || d.Discards[0].RowID != "m" {
		t.Fatalf("discards %+v", d.Discards)
	}
}

func TestFlattenNested(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"type":"identify","userId":"u","traits":{"address":{"postalCode":"123","geo":{"lat":1.5}},"createdAt":"2024-01-02T03:04:05.123+02:00","big":12345678901234567890,"neg":-3,"zero":0,"negzero":-0,"zerofrac":0.5}}`)
	r := oneRow(t, d, "identifies")
	wantCol(t, r, "address_postal_code", Text, "123")
	wantCol(t, r, "address_geo_lat", Numeric, "1.5")
	wantCol(t, r, "created_at", Timestamptz, "2024-01-02T03:04:05.123+02:00")
	wantCol(t, r, "big", Numeric, "12345678901234567890")
	wantCol(t, r, "neg", BigInt, "-3")
	wantCol(t, r, "zero", BigInt, "0")
	wantCol(t, r, "negzero", BigInt, "0")
	wantCol(t, r, "zerofrac", Numeric, "0.5")
}

func TestTimestamps(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, fields  string
		ts, received  string
		orig, sent    string
		discardColumn string
	}{
		{"nothing: all from the Kafka timestamp", ``, "2024-03-01T09:00:00Z", "2024-03-01T09:00:00Z", "", "", ""},
		{"timestamp only", `,"timestamp":"2024-01-01T00:00:00Z"`, "2024-01-01T00:00:00Z", "2024-03-01T09:00:00Z", "2024-01-01T00:00:00Z", "", ""},
		{"receivedAt and timestamp keep timestamp", `,"timestamp":"2024-01-01T00:00:00Z","receivedAt":"2024-01-01T00:01:00Z","sentAt":"2024-01-01T00:00:30Z"`, "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z", "2024-01-01T00:00:00Z", "2024-01-01T00:00:30Z", ""},
		{"skew from the Kafka timestamp", `,"originalTimestamp":"2024-03-01T08:59:00Z","sentAt":"2024-03-01T08:59:30Z"`, "2024-03-01T08:59:30Z", "2024-03-01T09:00:00Z", "2024-03-01T08:59:00Z", "2024-03-01T08:59:30Z", ""},
		{"bad sentAt is a discard", `,"sentAt":"yesterday"`, "2024-03-01T09:00:00Z", "2024-03-01T09:00:00Z", "", "", "sent_at"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","event":"E"`+c.fields+`}`)
			r := oneRow(t, d, "tracks")
			wantCol(t, r, "timestamp", Timestamptz, c.ts)
			wantCol(t, r, "received_at", Timestamptz, c.received)
			if c.orig != "" {
				wantCol(t, r, "original_timestamp", Timestamptz, c.orig)
			} else {
				noCol(t, r, "original_timestamp")
			}
			if c.sent != "" {
				wantCol(t, r, "sent_at", Timestamptz, c.sent)
			} else {
				noCol(t, r, "sent_at")
			}
			if c.discardColumn != "" && (len(d.Discards) != 1 || d.Discards[0].Column != c.discardColumn) {
				t.Fatalf("discards %+v", d.Discards)
			}
		})
	}
}

func TestBatchEnvelope(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"sentAt":"2024-01-01T00:00:10Z","context":{"library":{"name":"analytics-node"},"ip":"1.2.3.4"},"batch":[
		{"type":"track","messageId":"b1","userId":"u","event":"A","context":{"ip":"5.6.7.8"},"originalTimestamp":"2024-01-01T00:00:00Z"},
		{"type":"identify","messageId":"b2","userId":"u","sentAt":"2024-01-01T00:00:20Z"},
		{"type":"bogus","messageId":"b3"},
		{"type":"page"}
	]}`)
	if got := tables(d); got != "web.tracks,web.a,web.identifies,web.users" {
		t.Fatalf("tables %s", got)
	}
	tr := oneRow(t, d, "tracks")
	wantCol(t, tr, "context_ip", Text, "5.6.7.8")
	wantCol(t, tr, "context_library_name", Text, "analytics-node")
	wantCol(t, tr, "sent_at", Timestamptz, "2024-01-01T00:00:10Z")
	id := oneRow(t, d, "identifies")
	wantCol(t, id, "context_ip", Text, "1.2.3.4")
	wantCol(t, id, "sent_at", Timestamptz, "2024-01-01T00:00:20Z")
	if len(d.Rejected) != 2 {
		t.Fatalf("want 2 rejected messages, got %+v", d.Rejected)
	}
	if !strings.Contains(d.Rejected[0].Reason, "batch message 2") || !strings.Contains(d.Rejected[0].Reason, "unknown type") {
		t.Errorf("reason %q", d.Rejected[0].Reason)
	}
	if !strings.Contains(string(d.Rejected[0].Raw), `"bogus"`) {
		t.Errorf("raw %q", d.Rejected[0].Raw)
	}
	if d.Messages != 2 {
		t.Errorf("messages %d", d.Messages)
	}
}

func TestRejections(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, value, reason string
	}{
		{"invalid JSON", `{"type":`, "invalid JSON"},
		{"truncated", `{"type":"track","event":"A","userId":"u"`, "invalid JSON"},
		{"not an object", `[1,2]`, "not a JSON object"},
		{"string", `"hello"`, "not a JSON object"},
		{"empty", ``, "empty record value"},
		{"null", `null`, "not a JSON object"},
		{"unknown type", `{"type":"purchase","userId":"u"}`, "unknown type"},
		{"no type", `{"userId":"u"}`, `missing "type"`},
		{"track without event", `{"type":"track","userId":"u"}`, `without "event"`},
		{"track without ids", `{"type":"track","event":"E"}`, `without "userId" or "anonymousId"`},
		{"group without groupId", `{"type":"group","userId":"u"}`, `without "groupId"`},
		{"alias without previousId", `{"type":"alias","userId":"u"}`, `needs both`},
		{"event without letters", `{"type":"track","userId":"u","event":"!!!"}`, "cannot name a table"},
		{"NaN", `{"type":"track","userId":"u","event":"E","properties":{"x":NaN}}`, "invalid JSON"},
		{"leading zero", `{"type":"track","userId":"u","event":"E","properties":{"n":01}}`, `invalid JSON: "01" is not a number`},
		{"leading zero, negative", `{"type":"track","userId":"u","event":"E","properties":{"n":-007}}`, `invalid JSON: "-007" is not a number`},
		{"object userId", `{"type":"track","userId":{"a":1},"event":"E"}`, `"userId" is an object`},
		{"too deep", `{"type":"track","userId":"u","event":"E","properties":` + strings.Repeat(`{"a":`, 400) + `1` + strings.Repeat(`}`, 400) + `}`, "invalid JSON"},
		{"too large", `{"type":"track","userId":"u","event":"E","properties":{"x":"` + strings.Repeat("a", 600<<10) + `"}}`, "over the limit"},
		{"batch not array", `{"batch":{}}`, "not an array"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := decodeJSON(t, Config{}, "web", c.value)
			if len(d.Rows) != 0 || len(d.Rejected) != 1 {
				t.Fatalf("want one rejection, got rows %d rejected %+v", len(d.Rows), d.Rejected)
			}
			r := d.Rejected[0]
			if !strings.Contains(r.Reason, c.reason) {
				t.Errorf("reason %q does not say %q", r.Reason, c.reason)
			}
			if string(r.Raw) != c.value || r.Pos.Offset != 41 || r.Pos.Partition != 2 || !r.Timestamp.Equal(kafkaTS) {
				t.Errorf("rejected record does not keep the raw bytes and position: %+v", r.Pos)
			}
		})
	}
}

func TestSourceResolution(t *testing.T) {
	t.Parallel()
	cfg := Config{SourceHeader: "x-source", WriteKeys: map[string]string{"wk1": "Customer.io"}, TopicSources: map[string]string{"t-ios": "iOS App"}}
	d, _ := NewDecoder(cfg)
	msg := func(wk string) []byte {
		return []byte(`{"type":"track","userId":"u","event":"E","writeKey":"` + wk + `"}`)
	}
	cases := []struct {
		name   string
		rec    Record
		schema string
	}{
		{"header first", Record{Topic: "t-ios", SourceHeader: "AutopilotHQ", Value: msg("wk1")}, "autopilothq"},
		{"write key", Record{Topic: "t-ios", Value: msg("wk1")}, "customerio"},
		{"topic map", Record{Topic: "t-ios", Value: msg("other")}, "iosapp"},
		{"topic name", Record{Topic: "Web.Events", Value: msg("other")}, "webevents"},
		{"digit topic", Record{Topic: "2024events", Value: msg("other")}, "_2024events"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := d.Decode(&c.rec)
			if len(out.Rows) == 0 || out.Rows[0].Table.Schema != c.schema {
				t.Fatalf("schema: %+v, want %s", out, c.schema)
			}
		})
	}
}

func TestSanitizeText(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"E\",\"properties\":{\"a\":\"x\\u0000y\",\"b\":\"bad\xffutf\"}}")
	ev := oneRow(t, d, "e")
	wantCol(t, ev, "a", Text, "xy")
	wantCol(t, ev, "b", Text, "bad\uFFFDutf")
}

func TestFallbackIDIsDeterministic(t *testing.T) {
	t.Parallel()
	js := `{"batch":[{"type":"track","userId":"u","event":"E"},{"type":"track","userId":"u","event":"E"}]}`
	a := decodeJSON(t, Config{}, "web", js)
	b := decodeJSON(t, Config{}, "web", js)
	if a.Rows[0].Row.ID != b.Rows[0].Row.ID || a.Rows[0].Row.ID == a.Rows[2].Row.ID {
		t.Fatalf("ids %s %s %s", a.Rows[0].Row.ID, b.Rows[0].Row.ID, a.Rows[2].Row.ID)
	}
}

func TestNumericUserIDBecomesText(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"type":"identify","userId":12345,"messageId":99}`)
	wantCol(t, oneRow(t, d, "identifies"), "user_id", Text, "12345")
	wantCol(t, oneRow(t, d, "identifies"), "id", Text, "99")
	wantCol(t, oneRow(t, d, "users"), "id", Text, "12345")
}

func TestTypeCaseInsensitive(t *testing.T) {
	t.Parallel()
	d := decodeJSON(t, Config{}, "web", `{"type":"Track","userId":"u","event":"E"}`)
	if got := tables(d); got != "web.tracks,web.e" {
		t.Fatalf("tables %s", got)
	}
}

func TestReasonCodes(t *testing.T) {
	t.Parallel()
	for value, code := range map[string]string{
		`{"type":`:                      "invalid_json",
		`[1]`:                           "not_object",
		``:                              "empty",
		`{"type":"nope","userId":"u"}`:  "unknown_type",
		`{"type":"track","userId":"u"}`: "missing_field",
		`{"type":"track","userId":[1],"event":"E"}`: "bad_field",
		`{"type":"track","userId":"u","event":"!"}`: "unnameable",
		`{"batch":[{"type":"alias","userId":"u"}]}`: "missing_field",
	} {
		d := decodeJSON(t, Config{}, "web", value)
		if len(d.Rejected) != 1 || d.Rejected[0].Code != code {
			t.Errorf("%s: %+v, want code %s", value, d.Rejected, code)
		}
	}
	d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","event":"E","sentAt":"x","properties":{"名":1,"aB":1,"a_b":2},"context":[]}`)
	got := map[string]int{}
	for _, dc := range d.Discards {
		got[dc.Code]++
	}
	if got["bad_timestamp"] != 1 || got["unnamed_key"] != 1 || got["collision"] != 1 || got["not_object"] != 1 {
		t.Errorf("discard codes %v", got)
	}
}
