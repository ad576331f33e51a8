package schema

import (
	"strings"
	"testing"
)

// The seed corpus lives in testdata/fuzz/FuzzSnake and
// testdata/fuzz/FuzzColumnName; the f.Add seeds below are the SPEC's
// examples.

var specNames = []string{
	"Order Completed", "first_name", "firstName", "postalCode", "accountType",
	"HTMLParser", "productID", "iOS", "SaveEPub", "Save ePUB", "2FA Enabled",
	"101 Account Update", `"; DROP TABLE users; --`, "AutopilotHQ",
	"Customer.io", "Users", "id", "user", "tag", "open", "name", "type",
	"language", "category", "version", "名前", "address_postalCode",
	"abc123Def", "ABC123def", "Order2Go", "v2Beta",
}

func FuzzSnake(f *testing.F) {
	for _, s := range specNames {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Snake(s)
		checkSnake(t, s, got)
		if again := Snake(got); again != got {
			t.Errorf("Snake not idempotent: Snake(%q) = %q, Snake(%q) = %q", s, got, got, again)
		}
		if again := Snake(s); again != got {
			t.Errorf("Snake(%q) not deterministic: %q then %q", s, got, again)
		}
		if slow := string(appendSnake(nil, s)); slow != got {
			t.Errorf("Snake(%q) = %q but the slow path gives %q", s, got, slow)
		}
		if isSnake(s) && got != s {
			t.Errorf("Snake(%q) = %q: an already snake-cased name must come back unchanged", s, got)
		}
		// Snake keeps exactly the ASCII letters and digits, lowercased.
		if a, b := alnumLower(s), strings.ReplaceAll(got, "_", ""); a != b {
			t.Errorf("Snake(%q) = %q: letters and digits %q, want %q", s, got, b, a)
		}
		if ev := EventName(s); ev != got {
			t.Errorf("EventName(%q) = %q, want Snake's %q", s, ev, got)
		}
	})
}

func FuzzColumnName(f *testing.F) {
	for _, s := range specNames {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		snake := Snake(key)

		name, ok := ColumnName(key)
		if ok != (snake != "") {
			t.Errorf("ColumnName(%q) ok = %v, but Snake gives %q", key, ok, snake)
		}
		if ok {
			checkFuzzIdent(t, "ColumnName", key, name)
			if IsReserved(name) || isFixedColumn(name) {
				t.Errorf("ColumnName(%q) = %q: a reserved word or fixed column", key, name)
			}
			if again, _ := ColumnName(key); again != name {
				t.Errorf("ColumnName(%q) not deterministic: %q then %q", key, name, again)
			}
		} else if name != "" {
			t.Errorf("ColumnName(%q) = %q with ok = false, want \"\"", key, name)
		}

		ctx, ok := ContextColumn(key)
		if ok != (snake != "") {
			t.Errorf("ContextColumn(%q) ok = %v, but Snake gives %q", key, ok, snake)
		}
		if ok {
			checkFuzzIdent(t, "ContextColumn", key, ctx)
			if !strings.HasPrefix(ctx, "context_") {
				t.Errorf("ContextColumn(%q) = %q: want the context_ prefix", key, ctx)
			}
			if name != "" && ctx == name {
				t.Errorf("ContextColumn(%q) and ColumnName(%q) are both %q", key, key, ctx)
			}
		}

		table := EventTable(key)
		if (table != "") != (snake != "") {
			t.Errorf("EventTable(%q) = %q, but Snake gives %q", key, table, snake)
		}
		if table != "" {
			checkFuzzIdent(t, "EventTable", key, table)
			if isCallTable(table) {
				t.Errorf("EventTable(%q) = %q: one of the eight call tables", key, table)
			}
		}

		schema := SchemaName(key)
		if schema != "" {
			checkFuzzIdent(t, "SchemaName", key, schema)
			if strings.HasPrefix(schema, "pg_") {
				t.Errorf("SchemaName(%q) = %q: the pg_ prefix is Postgres's", key, schema)
			}
		}

		if l := LimitIdent(key); len(key) <= MaxIdentLen && l != key || len(key) > MaxIdentLen && len(l) != MaxIdentLen {
			t.Errorf("LimitIdent(%q) = %q (%d bytes)", key, l, len(l))
		}
	})
}

// checkSnake fails t unless out is a valid Snake result for in.
func checkSnake(t *testing.T, in, out string) {
	t.Helper()
	for i := 0; i < len(out); i++ {
		c := out[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			t.Fatalf("Snake(%q) = %q: byte %q is not [a-z0-9_]", in, out, c)
		}
	}
	if strings.HasPrefix(out, "_") || strings.HasSuffix(out, "_") || strings.Contains(out, "__") {
		t.Fatalf("Snake(%q) = %q: leading, trailing or double underscore", in, out)
	}
}

// checkFuzzIdent fails t unless id is 1..63 bytes of [a-z0-9_] not starting
// with a digit.
func checkFuzzIdent(t *testing.T, fn, in, id string) {
	t.Helper()
	if id == "" || len(id) > MaxIdentLen || !identRE.MatchString(id) {
		t.Fatalf("%s(%q) = %q: not 1..%d bytes of [a-z0-9_] starting with a letter or '_'", fn, in, id, MaxIdentLen)
	}
}

// alnumLower returns the ASCII letters and digits of s, lowercased.
func alnumLower(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteByte(c)
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + ('a' - 'A'))
		}
	}
	return b.String()
}
