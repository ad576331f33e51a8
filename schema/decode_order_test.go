package schema

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestDecodeColumnOrder pins the order of a row's columns, which the
// corpus goldens (maps) do not see, and that it does not depend on what the
// decoder's name caches have seen before.
func TestDecodeColumnOrder(t *testing.T) {
	dec, _ := NewDecoder(Config{})
	rec := func(js string) *Record {
		return &Record{Topic: "web", Offset: 1, Timestamp: time.Unix(1700000000, 0), Value: []byte(js)}
	}
	js := `{"type":"track","userId":"u","event":"E","messageId":"m","receivedAt":"2024-01-01T00:00:00Z",` +
		`"context":{"ip":"1","app":{"name":"x"}},"properties":{"b":1,"firstName":"a","first_name":"b","a":{"c":2},"id":3}}`
	want := []string{"id", "received_at", "user_id", "timestamp", "event", "event_text", "context_ip", "context_app_name",
		"b", "first_name", "a_c", "_id"}
	names := func(d *Decoded) []string {
		var n []string
		for _, c := range d.Rows[len(d.Rows)-1].Row.Cols {
			n = append(n, c.Name)
		}
		return n
	}
	cold := dec.Decode(rec(js))
	if got := names(cold); !reflect.DeepEqual(got, want) {
		t.Fatalf("columns %v, want %v", got, want)
	}
	if len(cold.Discards) != 1 || cold.Discards[0].Column != "firstName" || cold.Discards[0].Code != "collision" {
		t.Fatalf("discards %+v", cold.Discards)
	}

	// A large object (past the name cache's per-object index) in several
	// key orders, with keys landing on one column, between warm decodes.
	var keys []string
	for i := 0; i < 30; i++ {
		keys = append(keys, fmt.Sprintf(`"k%d":%d`, i, i), fmt.Sprintf(`"K %d":"x%d"`, i, i))
	}
	big := func(ks []string) string {
		return `{"type":"identify","userId":"u","messageId":"m","traits":{` + strings.Join(ks, ",") + `}}`
	}
	rev := make([]string, len(keys))
	for i, k := range keys {
		rev[len(keys)-1-i] = k
	}
	for _, in := range []string{big(keys), big(rev), js, big(keys[:7]), big(rev[3:])} {
		first := dec.Decode(rec(in))
		fresh, _ := NewDecoder(Config{})
		for i := 0; i < 3; i++ {
			if again := dec.Decode(rec(in)); !reflect.DeepEqual(first, again) {
				t.Fatalf("decode %d of %s differs:\n%+v\n%+v", i, in, first, again)
			}
		}
		if other := fresh.Decode(rec(in)); !reflect.DeepEqual(first, other) {
			t.Fatalf("decoders differ on %s", in)
		}
	}
}
