package sink

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/valyala/fastjson"

	"github.com/segwarehouse/segwarehouse/schema"
)

func TestMergeKeysRoundTrip(t *testing.T) {
	t.Parallel()
	var p fastjson.Parser
	for _, byCol := range []map[string]string{
		{"a": "k1", "b": "k1", "c": "k2", "received_at": "k2"},
		{},
		{"x": `00000000000000000001|id "quoted" \ back\slash`},
		{"y": "00000000000000000002|tab\there\nline\rcr\x01\x1f", "z": "00000000000000000002|ünïcödé ✓"},
		manyKeys(100, 7), // past the stack arrays: more than 64 columns, more than 4 keys
		manyKeys(64, 4),
		manyKeys(65, 5),
		manyKeys(300, 40), // past the linear search of keys
	} {
		js := appendKeysJSON(nil, byCol)
		// Valid JSON, grouped by key: what encoding/json reads back.
		var grouped map[string][]string
		if err := json.Unmarshal(js, &grouped); err != nil {
			t.Fatalf("%s is not JSON: %v", js, err)
		}
		n := 0
		for key, cols := range grouped {
			for _, c := range cols {
				n++
				if byCol[c] != key {
					t.Errorf("%s: column %q under key %q, want %q", js, c, key, byCol[c])
				}
			}
		}
		if n != len(byCol) {
			t.Errorf("%s holds %d columns, want %d", js, n, len(byCol))
		}
		// With and without a table def; the def knows every other column.
		var defCols []schema.ColumnDef
		i := 0
		for c := range byCol {
			if i%2 == 0 {
				defCols = append(defCols, schema.ColumnDef{Name: c, Type: schema.Text})
			}
			i++
		}
		def := schema.NewTableDef(schema.TableRef{Schema: "s", Table: "users"}, defCols)
		for _, d := range []*schema.TableDef{nil, def} {
			got, err := parseKeys(&p, js, d)
			if err != nil {
				t.Fatalf("parseKeys(%s): %v", js, err)
			}
			if !reflect.DeepEqual(got, byCol) {
				t.Errorf("round trip of %s (def %v): %v, want %v", js, d != nil, got, byCol)
			}
		}
	}
	// Keys sorted, each key's columns together.
	if a := string(appendKeysJSON(nil, map[string]string{"b": "k2", "a": "k1", "c": "k1"})); a != `{"k1":["a","c"],"k2":["b"]}` && a != `{"k1":["c","a"],"k2":["b"]}` {
		t.Errorf("appendKeysJSON = %s, want k1's columns a and c, then k2's b", a)
	}
	// The earlier column → key form still reads.
	got, err := parseKeys(&p, []byte(`{"a": "k1", "c": "k2"}`), nil)
	if err != nil || !reflect.DeepEqual(got, map[string]string{"a": "k1", "c": "k2"}) {
		t.Fatalf("old form: %v, %v", got, err)
	}
	if _, err := parseKeys(&p, []byte(`[1]`), nil); err == nil {
		t.Error("parseKeys of a JSON array: no error")
	}
}

// BenchmarkMergeKeys is the merge's Go work per users row: the stored
// keys read back, the incoming row merged, the new keys written.
func BenchmarkMergeKeys(b *testing.B) {
	stored := map[string]string{}
	in := schema.Row{Key: schema.MergeKey(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), "msg-2")}
	old := schema.MergeKey(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), "msg-1")
	for i := range 40 {
		name := fmt.Sprintf("trait_%02d_name", i)
		if i < 30 {
			stored[name] = old
		}
		if i%2 == 0 {
			in.Cols = append(in.Cols, schema.Col{Name: name, Val: schema.Value{Kind: schema.KindString, Str: "v"}})
		}
	}
	js := appendKeysJSON(nil, stored)
	var defCols []schema.ColumnDef
	for i := range 45 {
		defCols = append(defCols, schema.ColumnDef{Name: fmt.Sprintf("trait_%02d_name", i), Type: schema.Text})
	}
	def := schema.NewTableDef(schema.TableRef{Schema: "s", Table: "users"}, defCols)
	var p fastjson.Parser
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		k, err := parseKeys(&p, js, def)
		if err != nil {
			b.Fatal(err)
		}
		_, keys := schema.MergeRow(nil, k, in, nil)
		buf = appendKeysJSON(buf[:0], keys)
	}
}

// manyKeys returns n columns spread over k keys.
func manyKeys(n, k int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("col_%03d", i)] = fmt.Sprintf("key_%d", (i*7)%k)
	}
	return m
}
