package schema

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func validIdent(s string) bool {
	if s == "" || len(s) > MaxIdentLen || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func storableText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// FuzzDecode: the decoder never panics, every identifier it makes is a
// valid Postgres name, every text it makes is storable, and the same input
// always gives the same output.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"track","messageId":"m1","userId":"u1","event":"Order Completed","properties":{"orderId":"o1","revenue":19.99,"total":20,"coupon":null}}`,
		`{"type":"identify","userId":"u1","traits":{"first_time_shopper":true,"address":{"postalCode":"1"}}}`,
		`{"type":"page","anonymousId":"a","name":"Home","properties":{"name":"x","category":"y"}}`,
		`{"type":"group","userId":"u","groupId":"g","traits":{"name":"Initech","employees":329}}`,
		`{"type":"alias","userId":"u","previousId":"p"}`,
		`{"type":"screen","userId":"u","context":{"app":{"version":"1.0"},"screen":{"density":2.5}}}`,
		`{"batch":[{"type":"track","userId":"u","event":"E"},{"type":"x"}],"context":{"ip":"1.2.3.4"},"sentAt":"2024-01-01T00:00:00Z"}`,
		`{"type":"track","userId":"u","event":"\"; DROP TABLE users; --","properties":{"名前":1,"firstName":"a","first_name":"b","id":1,"user":2}}`,
		`{"type":"track","userId":"u","event":"E","properties":{"a":"x\u0000y","big":1e400,"neg":-0,"ts":"2024-01-01T00:00:00Z"}}`,
		`{"type":"track","userId":"u","event":"E","integrations":{"Warehouses":{"all":false}}}`,
		`[]`, `null`, `"x"`, `{}`, `{"type":`, "",
	} {
		f.Add([]byte(s))
	}
	dec, _ := NewDecoder(Config{WarehouseID: "wh", MaxRecordBytes: 64 << 10})
	f.Fuzz(func(t *testing.T, value []byte) {
		rec := &Record{Topic: "fuzz", Partition: 1, Offset: 7, Timestamp: time.Unix(1700000000, 0), Value: value}
		a := dec.Decode(rec)
		b := dec.Decode(rec)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("not deterministic:\n%+v\n%+v", a, b)
		}
		if len(a.Rows) == 0 && len(a.Rejected) == 0 && a.Skipped == 0 {
			t.Fatalf("input vanished: %+v", a)
		}
		// JSON's grammar, as encoding/json has it: a record that is not
		// JSON is rejected whole, and one that is is never rejected as
		// invalid JSON but for its depth.
		if len(value) <= 64<<10 && len(bytes.TrimSpace(value)) > 0 {
			whole := len(a.Rejected) == 1 && a.Rejected[0].Code == "invalid_json" && len(a.Rows) == 0 && bytes.Equal(a.Rejected[0].Raw, value)
			if valid := json.Valid(value); !valid && !whole {
				t.Fatalf("not JSON, not rejected whole: %+v", a)
			} else if valid && whole && !strings.Contains(a.Rejected[0].Reason, "nested deeper") {
				t.Fatalf("JSON rejected as invalid: %s", a.Rejected[0].Reason)
			}
		}
		for _, r := range a.Rows {
			if !validIdent(r.Table.Schema) || !validIdent(r.Table.Table) {
				t.Fatalf("bad table name %q.%q", r.Table.Schema, r.Table.Table)
			}
			if r.Row.ID == "" || !storableText(r.Row.ID) {
				t.Fatalf("bad row id %q", r.Row.ID)
			}
			seen := map[string]bool{}
			for _, c := range r.Row.Cols {
				if !validIdent(c.Name) {
					t.Fatalf("bad column name %q", c.Name)
				}
				if seen[c.Name] {
					t.Fatalf("column %s twice in %s", c.Name, r.Table)
				}
				seen[c.Name] = true
				if (c.Val.Kind == KindString || c.Val.Kind == KindArray || c.Val.Kind == KindNumber) && !storableText(c.Val.Str) {
					t.Fatalf("column %s holds unstorable text %q", c.Name, c.Val.Str)
				}
				if c.Val.Kind == KindArray && !json.Valid([]byte(c.Val.Str)) {
					t.Fatalf("column %s holds an array that is not JSON: %q", c.Name, c.Val.Str)
				}
			}
		}
		for _, d := range a.Discards {
			if !storableText(d.Column) || !storableText(d.Value) || !storableText(d.Reason) {
				t.Fatalf("unstorable discard %+v", d)
			}
		}
		for _, r := range a.Rejected {
			if !storableText(r.Reason) || r.Reason == "" {
				t.Fatalf("bad reason %q", r.Reason)
			}
		}
	})
}
