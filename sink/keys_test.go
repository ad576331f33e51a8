package sink

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestMergeKeysRoundTrip(t *testing.T) {
	t.Parallel()
	byCol := map[string]string{"a": "k1", "b": "k1", "c": "k2", "received_at": "k2"}
	packed := compactKeys(byCol)
	if len(packed) != 2 || !reflect.DeepEqual(packed["k1"], []string{"a", "b"}) {
		t.Fatalf("compact %v", packed)
	}
	// As Postgres hands jsonb back: through JSON.
	js, _ := json.Marshal(packed)
	var raw map[string]any
	if err := json.Unmarshal(js, &raw); err != nil {
		t.Fatal(err)
	}
	if got := expandKeys(raw); !reflect.DeepEqual(got, byCol) {
		t.Fatalf("round trip %v, want %v", got, byCol)
	}
	// The earlier column → key form still reads.
	old := map[string]any{"a": "k1", "c": "k2"}
	if got := expandKeys(old); !reflect.DeepEqual(got, map[string]string{"a": "k1", "c": "k2"}) {
		t.Fatalf("old form %v", got)
	}
}
