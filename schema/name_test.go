package schema

import (
	"hash/fnv"
	"regexp"
	"strings"
	"testing"
)

func TestSnake(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{
		// SPEC §6 and §12.
		{name: "words", in: "Order Completed", want: "order_completed"},
		{name: "already snake", in: "first_name", want: "first_name"},
		{name: "camel", in: "firstName", want: "first_name"},
		{name: "camel postal", in: "postalCode", want: "postal_code"},
		{name: "camel account type", in: "accountType", want: "account_type"},
		{name: "flattened path", in: "address_postalCode", want: "address_postal_code"},
		{name: "context path", in: "context_app_version", want: "context_app_version"},
		{name: "user agent", in: "userAgent", want: "user_agent"},
		{name: "capital run absorbs tail", in: "HTMLParser", want: "htmlparser"},
		{name: "trailing capital run", in: "productID", want: "product_id"},
		{name: "lower then capitals", in: "iOS", want: "i_os"},
		{name: "capital run in middle", in: "SaveEPub", want: "save_epub"},
		{name: "space then mixed", in: "Save ePUB", want: "save_e_pub"},
		{name: "leading digits stick", in: "2FA Enabled", want: "2fa_enabled"},
		{name: "leading number word", in: "101 Account Update", want: "101_account_update"},
		{name: "sql injection", in: `"; DROP TABLE users; --`, want: "drop_table_users"},
		{name: "register", in: "Register", want: "register"},

		// Digits: never start a word, do not change the phase.
		{name: "capital after digit after lower", in: "abc123Def", want: "abc123_def"},
		{name: "digits inside capital run", in: "ABC123def", want: "abc123def"},
		{name: "capital after digit after capitals", in: "ABC123Def", want: "abc123def"},
		{name: "order2go", in: "Order2Go", want: "order2_go"},
		{name: "v2 beta", in: "v2Beta", want: "v2_beta"},
		{name: "digits after separator", in: "total_revenue_180_days", want: "total_revenue_180_days"},
		{name: "digit word then camel", in: "2faEnabled", want: "2fa_enabled"},
		{name: "only digits", in: "123", want: "123"},
		{name: "digits around separator", in: "1.0", want: "1_0"},

		// Separators.
		{name: "empty", in: "", want: ""},
		{name: "only separators", in: " _-.$ ", want: ""},
		{name: "leading underscore", in: "_id", want: "id"},
		{name: "trailing underscore", in: "id_", want: "id"},
		{name: "double underscore", in: "a__b", want: "a_b"},
		{name: "separator run", in: "a - . $ b", want: "a_b"},
		{name: "dots", in: "app.version", want: "app_version"},
		{name: "dollar", in: "$browser", want: "browser"},
		{name: "hyphen", in: "utm-source", want: "utm_source"},
		{name: "separator before capital", in: "a_B", want: "a_b"},
		{name: "separator before digit", in: "a_2B", want: "a_2b"},
		{name: "all caps words", in: "ORDER COMPLETED", want: "order_completed"},
		{name: "title case", in: "Order_Completed", want: "order_completed"},

		// Non-ASCII, NUL and invalid UTF-8 bytes separate words.
		{name: "non-ascii only", in: "名前", want: ""},
		{name: "non-ascii inside", in: "caféBar", want: "caf_bar"},
		{name: "non-ascii between words", in: "größe", want: "gr_e"},
		{name: "emoji", in: "🎉party🎉Time", want: "party_time"},
		{name: "nul", in: "a\x00b", want: "a_b"},
		{name: "invalid utf8", in: "a\xff\xfeB", want: "a_b"},
		{name: "kelvin sign is not k", in: "\u212aelvin", want: "elvin"},
		{name: "fullwidth letters", in: "ＡＢＣ", want: ""},
		{name: "control bytes", in: "\tkey\nName\r", want: "key_name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Snake(tt.in); got != tt.want {
				t.Errorf("Snake(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got := Snake(tt.want); got != tt.want {
				t.Errorf("Snake not idempotent: Snake(%q) = %q", tt.want, got)
			}
			if got := string(appendSnake(nil, tt.in)); got != tt.want {
				t.Errorf("slow path appendSnake(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSnakeFastPathDoesNotAllocate(t *testing.T) {
	// Not parallel: AllocsPerRun is disturbed by concurrent allocation.
	for _, s := range []string{"first_name", "context_app_version", "a", "total_revenue_180_days"} {
		if n := testing.AllocsPerRun(100, func() { _ = Snake(s) }); n != 0 {
			t.Errorf("Snake(%q) allocates %v times, want 0", s, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Snake("accountType") }); n > 1 {
		t.Errorf("Snake(accountType) allocates %v times, want at most 1", n)
	}
}

func TestSchemaName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("Source", 50) // 300 bytes
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "capitals", in: "AutopilotHQ", want: "autopilothq"},
		{name: "dot removed", in: "Customer.io", want: "customerio"},
		{name: "plain", in: "web", want: "web"},
		{name: "underscore kept", in: "ios_app", want: "ios_app"},
		{name: "underscores not folded", in: "a__b_", want: "a__b_"},
		{name: "space and dash removed", in: "My Web-Site", want: "mywebsite"},
		{name: "digit prefix", in: "1password", want: "_1password"},
		{name: "digit after removal", in: ".42 Source", want: "_42source"},
		{name: "nothing left", in: "名前 .-", want: ""},
		{name: "empty", in: "", want: ""},
		{name: "non-ascii removed", in: "café", want: "caf"},
		{name: "kelvin sign removed", in: "\u212aelvin", want: "elvin"},
		{name: "nul and invalid utf8", in: "a\x00\xffb", want: "ab"},
		{name: "pg prefix reserved by postgres", in: "pg_catalog", want: "_pg_catalog"},
		{name: "pg prefix after lowering", in: "PG_Events", want: "_pg_events"},
		{name: "pg without underscore", in: "pgbouncer", want: "pgbouncer"},
		{name: "information schema", in: "Information_Schema", want: "_information_schema"},
		{name: "public stays", in: "public", want: "public"},
		{name: "long", in: long, want: LimitIdent(strings.ToLower(long))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := SchemaName(tt.in)
			if got != tt.want {
				t.Errorf("SchemaName(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got != "" {
				checkIdent(t, got)
			}
		})
	}
}

func TestEventNameAndTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        string
		wantEvent string
		wantTable string
	}{
		{name: "order completed", in: "Order Completed", wantEvent: "order_completed", wantTable: "order_completed"},
		{name: "register", in: "Register", wantEvent: "register", wantTable: "register"},
		{name: "digit prefix table only", in: "101 Account Update", wantEvent: "101_account_update", wantTable: "_101_account_update"},
		{name: "sql injection", in: `"; DROP TABLE users; --`, wantEvent: "drop_table_users", wantTable: "drop_table_users"},
		{name: "users", in: "Users", wantEvent: "users", wantTable: "_users"},
		{name: "tracks", in: "tracks", wantEvent: "tracks", wantTable: "_tracks"},
		{name: "identifies", in: "Identifies", wantEvent: "identifies", wantTable: "_identifies"},
		{name: "pages", in: "PAGES", wantEvent: "pages", wantTable: "_pages"},
		{name: "screens", in: "screens", wantEvent: "screens", wantTable: "_screens"},
		{name: "groups", in: "Groups", wantEvent: "groups", wantTable: "_groups"},
		{name: "aliases", in: "aliases", wantEvent: "aliases", wantTable: "_aliases"},
		{name: "accounts", in: "Accounts", wantEvent: "accounts", wantTable: "_accounts"},
		{name: "singular not a call table", in: "User", wantEvent: "user", wantTable: "user"},
		{name: "reserved word not prefixed", in: "Select", wantEvent: "select", wantTable: "select"},
		{name: "leading underscore dropped", in: "_users", wantEvent: "users", wantTable: "_users"},
		{name: "nothing", in: "名前", wantEvent: "", wantTable: ""},
		{name: "empty", in: "", wantEvent: "", wantTable: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := EventName(tt.in); got != tt.wantEvent {
				t.Errorf("EventName(%q) = %q, want %q", tt.in, got, tt.wantEvent)
			}
			got := EventTable(tt.in)
			if got != tt.wantTable {
				t.Errorf("EventTable(%q) = %q, want %q", tt.in, got, tt.wantTable)
			}
			if got != "" {
				checkIdent(t, got)
			}
		})
	}
}

func TestEventTableLong(t *testing.T) {
	t.Parallel()
	in := "1" + strings.Repeat(" Very Long Event", 20)
	event := EventName(in)
	if len(event) <= MaxIdentLen {
		t.Fatalf("EventName(%q) = %q: want the full name, no limit", in, event)
	}
	table := EventTable(in)
	checkIdent(t, table)
	if len(table) != MaxIdentLen || table != LimitIdent("_"+event) {
		t.Errorf("EventTable(%q) = %q, want LimitIdent(%q)", in, table, "_"+event)
	}
}

func TestColumnName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     string
		want   string
		wantOK bool
	}{
		// SPEC §12 examples 1, 2, 3, 5, 7 and 10.
		{name: "order id", in: "orderId", want: "order_id", wantOK: true},
		{name: "revenue", in: "revenue", want: "revenue", wantOK: true},
		{name: "account type", in: "accountType", want: "account_type", wantOK: true},
		{name: "first time shopper", in: "first_time_shopper", want: "first_time_shopper", wantOK: true},
		{name: "digits in words", in: "total_revenue_180_days", want: "total_revenue_180_days", wantOK: true},
		{name: "products", in: "products", want: "products", wantOK: true},
		{name: "employees", in: "employees", want: "employees", wantOK: true},
		{name: "nested trait", in: "address_postalCode", want: "address_postal_code", wantOK: true},
		{name: "id collides", in: "id", want: "_id", wantOK: true},
		{name: "user reserved", in: "user", want: "_user", wantOK: true},
		{name: "tag reserved", in: "tag", want: "_tag", wantOK: true},
		{name: "language stays", in: "language", want: "language", wantOK: true},

		// SPEC §6 rule 2 exceptions and examples.
		{name: "open reserved", in: "open", want: "_open", wantOK: true},
		{name: "name stays", in: "name", want: "name", wantOK: true},
		{name: "type stays", in: "type", want: "type", wantOK: true},
		{name: "category stays", in: "category", want: "category", wantOK: true},
		{name: "version stays", in: "version", want: "version", wantOK: true},
		{name: "reserved after snake", in: "User", want: "_user", wantOK: true},
		{name: "reserved select", in: "SELECT", want: "_select", wantOK: true},
		{name: "postgres-only reserved", in: "window", want: "_window", wantOK: true},
		{name: "postgres current_schema", in: "currentSchema", want: "_current_schema", wantOK: true},
		{name: "system column", in: "ctid", want: "_ctid", wantOK: true},
		{name: "non-reserved keyword", in: "time", want: "time", wantOK: true},
		{name: "reserved word inside", in: "user_name", want: "user_name", wantOK: true},

		// Rule 1.
		{name: "digit prefix", in: "2FA Enabled", want: "_2fa_enabled", wantOK: true},
		{name: "only digits", in: "42", want: "_42", wantOK: true},

		// Rule 3: fixed columns, same set for every table.
		{name: "received_at", in: "receivedAt", want: "_received_at", wantOK: true},
		{name: "uuid_ts", in: "uuid_ts", want: "_uuid_ts", wantOK: true},
		{name: "anonymous_id", in: "anonymousId", want: "_anonymous_id", wantOK: true},
		{name: "user_id", in: "userId", want: "_user_id", wantOK: true},
		{name: "sent_at", in: "sentAt", want: "_sent_at", wantOK: true},
		{name: "original_timestamp", in: "originalTimestamp", want: "_original_timestamp", wantOK: true},
		{name: "timestamp fixed and reserved", in: "timestamp", want: "_timestamp", wantOK: true},
		{name: "event", in: "event", want: "_event", wantOK: true},
		{name: "event_text", in: "eventText", want: "_event_text", wantOK: true},
		{name: "group_id", in: "groupId", want: "_group_id", wantOK: true},
		{name: "previous_id", in: "previousId", want: "_previous_id", wantOK: true},
		{name: "context prefix", in: "context_ip", want: "_context_ip", wantOK: true},
		{name: "context camel", in: "contextIp", want: "_context_ip", wantOK: true},
		{name: "context alone", in: "context", want: "context", wantOK: true},
		{name: "leading underscore id", in: "_id", want: "_id", wantOK: true},
		{name: "uuid is no column", in: "uuid", want: "uuid", wantOK: true},
		{name: "id suffix", in: "productID", want: "product_id", wantOK: true},

		// Rule 5.
		{name: "non-ascii", in: "名前", want: "", wantOK: false},
		{name: "empty", in: "", want: "", wantOK: false},
		{name: "separators", in: "_.$", want: "", wantOK: false},
		{name: "nul", in: "\x00", want: "", wantOK: false},
		{name: "invalid utf8 separates", in: "a\xc3\x28b", want: "a_b", wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := ColumnName(tt.in)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ColumnName(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
			if ok {
				checkIdent(t, got)
			}
		})
	}
}

func TestColumnNameCollisions(t *testing.T) {
	t.Parallel()
	// SPEC §6 rule 6 settles these; the namer only has to map them to one
	// name, deterministically.
	groups := [][]string{
		{"firstName", "first_name", "FirstName", "first-name", "first.name"},
		{"id", "_id", "ID", "Id"},
	}
	for _, keys := range groups {
		want, _ := ColumnName(keys[0])
		for _, k := range keys[1:] {
			if got, _ := ColumnName(k); got != want {
				t.Errorf("ColumnName(%q) = %q, want %q like %q", k, got, want, keys[0])
			}
		}
	}
}

func TestContextColumn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     string
		want   string
		wantOK bool
	}{
		// SPEC §5 and §12 example 6.
		{name: "app version", in: "app_version", want: "context_app_version", wantOK: true},
		{name: "user agent", in: "userAgent", want: "context_user_agent", wantOK: true},
		{name: "network wifi", in: "network_wifi", want: "context_network_wifi", wantOK: true},
		{name: "screen density", in: "screen_density", want: "context_screen_density", wantOK: true},
		{name: "traits email", in: "traits_email", want: "context_traits_email", wantOK: true},
		{name: "ip", in: "ip", want: "context_ip", wantOK: true},
		{name: "no reserved prefix", in: "user", want: "context_user", wantOK: true},
		{name: "no digit prefix", in: "2fa", want: "context_2fa", wantOK: true},
		{name: "capital run", in: "device_adTrackingEnabled", want: "context_device_ad_tracking_enabled", wantOK: true},
		{name: "nothing", in: "名前", want: "", wantOK: false},
		{name: "empty", in: "", want: "", wantOK: false},
		{name: "long", in: strings.Repeat("deep_", 20), want: LimitIdent("context_" + strings.TrimSuffix(strings.Repeat("deep_", 20), "_")), wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := ContextColumn(tt.in)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ContextColumn(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
			if ok {
				checkIdent(t, got)
				if !strings.HasPrefix(got, "context_") {
					t.Errorf("ContextColumn(%q) = %q: want the context_ prefix", tt.in, got)
				}
			}
		})
	}
}

func TestLimitIdent(t *testing.T) {
	t.Parallel()
	prefix := strings.Repeat("p", identCut)  // 54 bytes
	long := strings.Repeat("abcdefghij", 30) // 300 bytes
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "empty", in: "", want: ""},
		{name: "short", in: "order_id", want: "order_id"},
		{name: "exactly 63", in: strings.Repeat("a", 63), want: strings.Repeat("a", 63)},
		{name: "64 cut", in: strings.Repeat("a", 64), want: strings.Repeat("a", 54) + "_" + fnvHex(strings.Repeat("a", 64))},
		{name: "300 cut", in: long, want: long[:54] + "_" + fnvHex(long)},
		{name: "same prefix a", in: prefix + "_first_suffix_xx", want: prefix + "_" + fnvHex(prefix+"_first_suffix_xx")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := LimitIdent(tt.in)
			if got != tt.want {
				t.Errorf("LimitIdent(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if len(got) > MaxIdentLen {
				t.Errorf("LimitIdent(%q) is %d bytes, want at most %d", tt.in, len(got), MaxIdentLen)
			}
			if again := LimitIdent(got); again != got {
				t.Errorf("LimitIdent not idempotent: %q → %q", got, again)
			}
		})
	}

	t.Run("distinct long names sharing 54 bytes", func(t *testing.T) {
		t.Parallel()
		a := LimitIdent(prefix + "_alpha_alpha_alpha")
		b := LimitIdent(prefix + "_bravo_bravo_bravo")
		if a == b {
			t.Errorf("two long names merged into %q", a)
		}
		if a[:identCut] != b[:identCut] || len(a) != MaxIdentLen || len(b) != MaxIdentLen {
			t.Errorf("got %q and %q: want 63 bytes each, sharing the 54-byte prefix", a, b)
		}
	})

	t.Run("300-byte column", func(t *testing.T) {
		t.Parallel()
		key := strings.Repeat("longKey", 43)[:300]
		got, ok := ColumnName(key)
		if !ok || len(got) != MaxIdentLen {
			t.Fatalf("ColumnName(300 bytes) = %q, %v: want 63 bytes", got, ok)
		}
		checkIdent(t, got)
		again, _ := ColumnName(key)
		if again != got {
			t.Errorf("ColumnName not deterministic: %q then %q", got, again)
		}
		if want := LimitIdent(Snake(key)); got != want {
			t.Errorf("ColumnName(300 bytes) = %q, want %q", got, want)
		}
	})

	t.Run("hash is of the prefixed name", func(t *testing.T) {
		t.Parallel()
		key := "1" + strings.Repeat("x", 100)
		got, _ := ColumnName(key)
		if want := "_1" + strings.Repeat("x", 52) + "_" + fnvHex("_"+key); got != want {
			t.Errorf("ColumnName(%q) = %q, want %q", key, got, want)
		}
	})
}

func TestFNV32a(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "a", "foobar", strings.Repeat("xyz", 100), "\x00\xff"} {
		h := fnv.New32a()
		h.Write([]byte(s))
		if got, want := fnv32a(s), h.Sum32(); got != want {
			t.Errorf("fnv32a(%q) = %#x, want %#x", s, got, want)
		}
	}
	if got := fnv32a(""); got != 0x811c9dc5 {
		t.Errorf("fnv32a(\"\") = %#x, want 0x811c9dc5", got)
	}
}

func TestIsReserved(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want bool
	}{
		// Redshift.
		{name: "user", in: "user", want: true},
		{name: "tag", in: "tag", want: true},
		{name: "open", in: "open", want: true},
		{name: "aes128", in: "aes128", want: true},
		{name: "current_user_id", in: "current_user_id", want: true},
		{name: "timestamp", in: "timestamp", want: true},
		{name: "without", in: "without", want: true},
		{name: "oid", in: "oid", want: true},
		// PostgreSQL only.
		{name: "analyse", in: "analyse", want: true},
		{name: "asymmetric", in: "asymmetric", want: true},
		{name: "current_catalog", in: "current_catalog", want: true},
		{name: "current_role", in: "current_role", want: true},
		{name: "current_schema", in: "current_schema", want: true},
		{name: "fetch", in: "fetch", want: true},
		{name: "lateral", in: "lateral", want: true},
		{name: "returning", in: "returning", want: true},
		{name: "symmetric", in: "symmetric", want: true},
		{name: "system_user", in: "system_user", want: true},
		{name: "tablesample", in: "tablesample", want: true},
		{name: "variadic", in: "variadic", want: true},
		{name: "window", in: "window", want: true},
		// PostgreSQL system columns.
		{name: "xmin", in: "xmin", want: true},
		{name: "ctid", in: "ctid", want: true},
		{name: "tableoid", in: "tableoid", want: true},
		// SPEC §6 exceptions and ordinary names.
		{name: "name", in: "name", want: false},
		{name: "type", in: "type", want: false},
		{name: "language", in: "language", want: false},
		{name: "category", in: "category", want: false},
		{name: "version", in: "version", want: false},
		{name: "id is fixed not reserved", in: "id", want: false},
		{name: "time", in: "time", want: false},
		{name: "position", in: "position", want: false},
		{name: "users", in: "users", want: false},
		{name: "case-sensitive", in: "USER", want: false},
		{name: "empty", in: "", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := IsReserved(tt.in); got != tt.want {
				t.Errorf("IsReserved(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// checkIdent fails t unless s is a non-empty identifier of at most 63 bytes
// of [a-z0-9_] that does not start with a digit.
func checkIdent(t testing.TB, s string) {
	t.Helper()
	if len(s) == 0 || len(s) > MaxIdentLen || !identRE.MatchString(s) {
		t.Errorf("%q is not a valid identifier (1..%d bytes of [a-z0-9_], not starting with a digit)", s, MaxIdentLen)
	}
}

// fnvHex is the 8-digit suffix LimitIdent appends, computed with hash/fnv
// so that the test does not trust the package's own hash.
func fnvHex(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	const digits = "0123456789abcdef"
	v := h.Sum32()
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

func BenchmarkSnake(b *testing.B) {
	keys := []struct {
		name string
		key  string
	}{
		{name: "snake", key: "first_name"},
		{name: "camel", key: "accountType"},
		{name: "path", key: "address_postalCode"},
		{name: "words", key: "Order Completed"},
		{name: "capitals", key: "productID"},
	}
	for _, k := range keys {
		b.Run(k.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = Snake(k.key)
			}
		})
	}
}

func BenchmarkColumnName(b *testing.B) {
	b.ReportAllocs()
	keys := []string{"first_name", "accountType", "address_postalCode", "id", "revenue"}
	for b.Loop() {
		for _, k := range keys {
			_, _ = ColumnName(k)
		}
	}
}
