package sink

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/valyala/fastjson"
)

func TestMergeKeysRoundTrip(t *testing.T) {
	t.Parallel()
	var p fastjson.Parser
	for _, byCol := range []map[string]string{
		{"a": "k1", "b": "k1", "c": "k2", "received_at": "k2"},
		{},
		{"x": `00000000000000000001|id "quoted" \ back\slash`},
		{"y": "00000000000000000002|tab\there\nline\rcr\x01\x1f", "z": "00000000000000000002|ünïcödé ✓"},
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
		got, err := parseKeys(&p, js)
		if err != nil {
			t.Fatalf("parseKeys(%s): %v", js, err)
		}
		if !reflect.DeepEqual(got, byCol) {
			t.Errorf("round trip of %s: %v, want %v", js, got, byCol)
		}
	}
	// Keys and columns sorted: equal maps give equal text.
	if a, b := appendKeysJSON(nil, map[string]string{"b": "k2", "a": "k1", "c": "k1"}), `{"k1":["a","c"],"k2":["b"]}`; string(a) != b {
		t.Errorf("appendKeysJSON = %s, want %s", a, b)
	}
	// The earlier column → key form still reads.
	got, err := parseKeys(&p, []byte(`{"a": "k1", "c": "k2"}`))
	if err != nil || !reflect.DeepEqual(got, map[string]string{"a": "k1", "c": "k2"}) {
		t.Fatalf("old form: %v, %v", got, err)
	}
	if _, err := parseKeys(&p, []byte(`[1]`)); err == nil {
		t.Error("parseKeys of a JSON array: no error")
	}
}
