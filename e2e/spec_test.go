package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
)

// colTypes returns column → data_type of a table.
func colTypes(t *testing.T, dsn, schema, table string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, c := range pgtest.Columns(t, dsn, schema, table) {
		out[c.Name] = c.DataType
	}
	return out
}

func wantTypes(t *testing.T, dsn, schema, table string, want map[string]string) {
	t.Helper()
	got := colTypes(t, dsn, schema, table)
	for c, typ := range want {
		if typ == "" {
			if _, ok := got[c]; ok {
				t.Errorf("%s.%s: column %s should not exist", schema, table, c)
			}
			continue
		}
		if got[c] != typ {
			t.Errorf("%s.%s: column %s is %q, want %q (columns: %v)", schema, table, c, got[c], typ, got)
		}
	}
}

// one returns the text form of a single value.
func one(t *testing.T, dsn, sql string, args ...any) string {
	t.Helper()
	rows := pgtest.Query(t, dsn, sql, args...)
	if len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("%s: want one value, got %v", sql, rows)
	}
	if rows[0][0] == nil {
		return "NULL"
	}
	return fmt.Sprint(rows[0][0])
}

// TestSpecExamples produces every SPEC §12 example with kcat (librdkafka)
// into a running `segwarehouse run` and checks the warehouse in Postgres.
func TestSpecExamples(t *testing.T) {
	dsn, ldsn := warehouse(t)
	b := newBroker(t, 3, "web", "mobile")
	startLoader(t, loaderEnv(b, ldsn, "web", "mobile"))
	caughtUp := func() { waitCaughtUp(t, b, dsn, "e2e", 60*time.Second, "web", "mobile") }

	b.kcatProduce(t, "web",
		// 1
		`{"type":"track","messageId":"m1","userId":"u1","event":"Order Completed","properties":{"orderId":"o1","revenue":19.99,"total":20,"coupon":null}}`,
		// 2
		`{"type":"track","messageId":"m2","userId":"u1","event":"Register","properties":{"plan":"Pro Annual","accountType":"Facebook"}}`,
		// 3 in one order
		`{"type":"identify","messageId":"i1","userId":"u1","receivedAt":"2024-01-01T00:00:01Z","traits":{"first_time_shopper":true}}`,
		`{"type":"identify","messageId":"i2","userId":"u1","receivedAt":"2024-01-01T00:00:02Z","traits":{"total_revenue_180_days":450.5}}`,
		// 4
		`{"type":"identify","messageId":"i3","anonymousId":"a1","traits":{"x":1}}`,
		// 5
		`{"type":"track","messageId":"m5","userId":"u1","event":"Cart","properties":{"products":[{"sku":"s1"}],"tags":["x","y"]}}`,
		// 6
		`{"type":"track","messageId":"m6","userId":"u1","event":"Ctx","context":{"app":{"version":"1.0"},"userAgent":"UA","network":{"wifi":true},"screen":{"density":2.5}}}`,
		`{"type":"page","messageId":"p6","userId":"u1","name":"Home","context":{"app":{"version":"1.0"},"userAgent":"UA","network":{"wifi":true},"screen":{"density":2.5}}}`,
		// 7
		`{"type":"group","messageId":"g7","userId":"u1","groupId":"g1","traits":{"name":"Initech","employees":329}}`,
		// 8, first value
		`{"type":"track","messageId":"m8a","userId":"u1","event":"Priced","properties":{"price":10}}`,
		// 9, first value
		`{"type":"track","messageId":"m9a","userId":"u1","event":"Promo","properties":{"promo":null}}`,
		// 10
		`{"type":"track","messageId":"m10","userId":"u1","event":"Reserved","properties":{"id":"p9","user":"bob","tag":"x","language":"en"}}`,
		// 11
		`{"type":"track","messageId":"m11","userId":"u1","event":"Skew","originalTimestamp":"2024-01-01T12:00:00Z","sentAt":"2024-01-01T12:00:05Z","receivedAt":"2024-01-01T12:00:10Z"}`,
		// 12, first copy
		`{"type":"track","messageId":"dup","userId":"u1","event":"Dup","properties":{"v":"first"}}`,
		// 13
		`{"type":"track","messageId":"m13a","userId":"u1","event":"Routed","integrations":{"Warehouses":{"all":false}}}`,
		`{"type":"track","messageId":"m13b","userId":"u1","event":"Routed","integrations":{"All":false}}`,
		// 14
		`{"type":"track","messageId":"m14","userId":"u1","event":"\"; DROP TABLE users; --"}`,
	)
	// 3 in the other order, into another source.
	b.kcatProduce(t, "mobile",
		`{"type":"identify","messageId":"i2","userId":"u1","receivedAt":"2024-01-01T00:00:02Z","traits":{"total_revenue_180_days":450.5}}`,
		`{"type":"identify","messageId":"i1","userId":"u1","receivedAt":"2024-01-01T00:00:01Z","traits":{"first_time_shopper":true}}`,
	)
	caughtUp()
	// Later batches: 8's casts, 9's second value, 12's second copy.
	b.kcatProduce(t, "web",
		`{"type":"track","messageId":"m8b","userId":"u1","event":"Priced","properties":{"price":10.75}}`,
		`{"type":"track","messageId":"m8c","userId":"u1","event":"Priced","properties":{"price":"abc"}}`,
		`{"type":"track","messageId":"m8d","userId":"u1","event":"Priced","properties":{"price":"42"}}`,
		`{"type":"track","messageId":"m9b","userId":"u1","event":"Promo","properties":{"promo":"X"}}`,
		`{"type":"track","messageId":"dup","userId":"u1","event":"Dup","properties":{"v":"second"}}`,
	)
	caughtUp()

	t.Run("1 order completed", func(t *testing.T) {
		if got := one(t, dsn, `SELECT event || '|' || event_text FROM web.tracks WHERE id = 'm1'`); got != "order_completed|Order Completed" {
			t.Errorf("tracks: %s", got)
		}
		wantTypes(t, dsn, "web", "tracks", map[string]string{"order_id": "", "revenue": "", "total": "", "event": "text", "event_text": "text"})
		wantTypes(t, dsn, "web", "order_completed", map[string]string{"order_id": "text", "revenue": "numeric", "total": "bigint", "coupon": ""})
		if got := one(t, dsn, `SELECT order_id || '|' || revenue || '|' || total FROM web.order_completed WHERE id = 'm1'`); got != "o1|19.99|20" {
			t.Errorf("order_completed: %s", got)
		}
	})
	t.Run("2 register", func(t *testing.T) {
		wantTypes(t, dsn, "web", "register", map[string]string{"plan": "text", "account_type": "text"})
		if got := one(t, dsn, `SELECT plan || '|' || account_type FROM web.register`); got != "Pro Annual|Facebook" {
			t.Errorf("register: %s", got)
		}
	})
	t.Run("3 users merged in either order", func(t *testing.T) {
		for _, s := range []string{"web", "mobile"} {
			if n := count(t, dsn, `SELECT count(*) FROM `+s+`.identifies WHERE user_id = 'u1'`); n != 2 {
				t.Errorf("%s.identifies: %d rows", s, n)
			}
			got := one(t, dsn, `SELECT count(*) || '|' || bool_and(first_time_shopper) || '|' || max(total_revenue_180_days) || '|' || max(received_at) FROM `+s+`.users WHERE id = 'u1'`)
			if got != "1|true|450.5|2024-01-01 00:00:02+00" {
				t.Errorf("%s.users: %s", s, got)
			}
		}
	})
	t.Run("4 anonymous identify", func(t *testing.T) {
		if n := count(t, dsn, `SELECT count(*) FROM web.identifies WHERE anonymous_id = 'a1'`); n != 1 {
			t.Errorf("identifies: %d", n)
		}
		if n := count(t, dsn, `SELECT count(*) FROM web.users`); n != 1 {
			t.Errorf("users has %d rows, want only u1", n)
		}
	})
	t.Run("5 arrays", func(t *testing.T) {
		wantTypes(t, dsn, "web", "cart", map[string]string{"products": "text", "tags": "text"})
		if got := one(t, dsn, `SELECT products || tags FROM web.cart`); got != `[{"sku":"s1"}]["x","y"]` {
			t.Errorf("cart: %s", got)
		}
	})
	t.Run("6 context everywhere", func(t *testing.T) {
		want := map[string]string{"context_app_version": "text", "context_user_agent": "text", "context_network_wifi": "boolean", "context_screen_density": "numeric"}
		for _, tb := range []string{"tracks", "ctx", "pages"} {
			wantTypes(t, dsn, "web", tb, want)
		}
		if got := one(t, dsn, `SELECT context_app_version || context_user_agent || context_network_wifi || context_screen_density FROM web.ctx`); got != "1.0UAtrue2.5" {
			t.Errorf("ctx: %s", got)
		}
	})
	t.Run("7 group and account", func(t *testing.T) {
		if got := one(t, dsn, `SELECT group_id || '|' || name || '|' || employees FROM web.groups`); got != "g1|Initech|329" {
			t.Errorf("groups: %s", got)
		}
		if got := one(t, dsn, `SELECT id || '|' || user_id || '|' || name FROM web.accounts`); got != "g1|u1|Initech" {
			t.Errorf("accounts: %s", got)
		}
	})
	t.Run("8 casts into bigint", func(t *testing.T) {
		wantTypes(t, dsn, "web", "priced", map[string]string{"price": "bigint"})
		got := pgtest.Query(t, dsn, `SELECT id, price FROM web.priced ORDER BY id`)
		want := "[[m8a 10] [m8b 10] [m8c <nil>] [m8d 42]]"
		if fmt.Sprint(got) != want {
			t.Errorf("prices %v, want %s", got, want)
		}
		if got := one(t, dsn, `SELECT value || '|' || column_name FROM _segwarehouse.discards WHERE row_id = 'm8c'`); got != "abc|price" {
			t.Errorf("discard: %s", got)
		}
	})
	t.Run("9 null then value", func(t *testing.T) {
		wantTypes(t, dsn, "web", "promo", map[string]string{"promo": "text"})
		if got := one(t, dsn, `SELECT coalesce(promo, 'NULL') FROM web.promo WHERE id = 'm9a'`); got != "NULL" {
			t.Errorf("first row: %s", got)
		}
	})
	t.Run("10 reserved and fixed", func(t *testing.T) {
		if got := one(t, dsn, `SELECT _id || _user || _tag || language || id FROM web.reserved`); got != "p9bobxenm10" {
			t.Errorf("reserved: %s", got)
		}
	})
	t.Run("11 timestamp skew", func(t *testing.T) {
		if got := one(t, dsn, `SELECT to_char(timestamp AT TIME ZONE 'UTC', 'HH24:MI:SS') FROM web.skew`); got != "12:00:05" {
			t.Errorf("timestamp: %s", got)
		}
	})
	t.Run("12 first copy wins", func(t *testing.T) {
		if got := one(t, dsn, `SELECT count(*) || v FROM web.dup GROUP BY v`); got != "1first" {
			t.Errorf("dup: %s", got)
		}
	})
	t.Run("13 routing", func(t *testing.T) {
		got := pgtest.Query(t, dsn, `SELECT id FROM web.routed`)
		if fmt.Sprint(got) != "[[m13b]]" {
			t.Errorf("routed: %v", got)
		}
	})
	t.Run("14 hostile event name", func(t *testing.T) {
		if got := one(t, dsn, `SELECT event_text FROM web.drop_table_users`); got != `"; DROP TABLE users; --` {
			t.Errorf("event_text: %s", got)
		}
		if !tableExists(t, dsn, "web", "users") {
			t.Error("web.users is gone")
		}
	})
	t.Run("standard columns", func(t *testing.T) {
		cols := pgtest.Columns(t, dsn, "web", "order_completed")
		var names []string
		for _, c := range cols {
			names = append(names, c.Name)
		}
		if len(names) < 3 || strings.Join(names[:3], ",") != "id,received_at,uuid_ts" {
			t.Errorf("first columns %v", names)
		}
		wantTypes(t, dsn, "web", "order_completed", map[string]string{
			"id": "text", "received_at": "timestamp with time zone", "uuid_ts": "timestamp with time zone",
			"user_id": "text", "timestamp": "timestamp with time zone", "anonymous_id": "", "loaded_at": "", "uuid": "",
		})
		wantTypes(t, dsn, "web", "users", map[string]string{"anonymous_id": "", "sent_at": "", "timestamp": "", "original_timestamp": ""})
	})
	t.Run("offsets equal end offsets, rows equal distinct ids", func(t *testing.T) {
		var tracks int64
		for _, tb := range []string{"order_completed", "register", "cart", "ctx", "priced", "promo", "reserved", "skew", "dup", "routed", "drop_table_users"} {
			tracks += count(t, dsn, `SELECT count(*) FROM web.`+tb)
		}
		if n := count(t, dsn, `SELECT count(*) FROM web.tracks`); n != tracks {
			t.Errorf("tracks has %d rows, event tables %d", n, tracks)
		}
		if n := count(t, dsn, `SELECT count(DISTINCT id) FROM web.tracks`); n != tracks {
			t.Errorf("distinct ids %d", n)
		}
		var names []string
		for _, r := range pgtest.Query(t, dsn, `SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'web'`) {
			names = append(names, r[0].(string))
		}
		sort.Strings(names)
		want := "accounts,cart,ctx,drop_table_users,dup,groups,identifies,order_completed,pages,priced,promo,register,reserved,routed,skew,tracks,users"
		if strings.Join(names, ",") != want {
			t.Errorf("tables in web:\n got %s\nwant %s", strings.Join(names, ","), want)
		}
	})
}
