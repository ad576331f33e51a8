package schema

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// TestDecodeKeepsNoRecordBytes checks that nothing Decode returns, and
// nothing its caches keep, shares memory with the record's value: the
// consumer lets Kafka's fetched batches go (or reuses them) once decoded.
// Every input is decoded from a buffer that is then overwritten; decoding
// each again from a fresh copy must give what the first decode returned.
func TestDecodeKeepsNoRecordBytes(t *testing.T) {
	files, _ := filepath.Glob("testdata/corpus/*.json")
	var inputs [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, b)
	}
	inputs = append(inputs,
		[]byte(`{"type":"track","event":"Sign\u00e9d Up","messageId":"m\"1","userId":42,"properties":{"pl\u00e2n":"pro\nx","n":1.50,"big":12345678901234567890,"tags":["a", "b"],"obj":{"k":"v"},"":"unnamed","Plan":"collides","at":"2024-02-14T09:40:00Z","bad_at":"2024-13-45T00:00:00Z"},"timestamp":"not a time","context":{"ip":"1.2.3.4","app":{"name":"ios"}}}`),
		[]byte(`{"type":"identify","userId":"u1","traits":{"email":"a@b.c","age":"31"},"context":{"traits":{"x":1}}}`),
		[]byte(`{"type":"group","groupId":"g1","userId":"u1","traits":{"name":"Acme"}}`),
		[]byte(`{"type":"page","name":"Home","category":"Docs","anonymousId":"a1","properties":{"url":"https://x"}}`),
		[]byte(`{"type":"alias","previousId":"old","userId":"new"}`),
		[]byte(`{"batch":[{"type":"track","event":"A","userId":"u"},"not an object",{"type":"nope"}],"context":{"library":{"name":"x"}},"writeKey":"wk_web"}`),
		[]byte(`{"type":"track","event":"A","userId":"u","properties":{"n":1e999999x}}`),
		[]byte(`[1,2,3]`),
		[]byte(`{"type":"track"`),
		[]byte(`   `),
	)
	dec, err := NewDecoder(Config{WriteKeys: map[string]string{"wk_web": "Website", "wk_server": "Backend"}})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(v []byte, i int) *Record {
		return &Record{Topic: "segment", Partition: 3, Offset: int64(i), Timestamp: time.Date(2024, 2, 14, 9, 40, 0, 0, time.UTC), Value: v}
	}
	first := make([]*Decoded, len(inputs))
	for i, in := range inputs {
		buf := bytes.Clone(in)
		first[i] = dec.Decode(rec(buf, i))
		for j := range buf {
			buf[j] = 'x'
		}
	}
	rejected, rows := 0, 0
	for i, in := range inputs {
		again := dec.Decode(rec(bytes.Clone(in), i))
		if !reflect.DeepEqual(first[i], again) {
			t.Errorf("input %d (%.60s…): the first decode changed when its record's bytes were overwritten:\nfirst %+v\nagain %+v", i, in, first[i], again)
		}
		rejected += len(again.Rejected)
		rows += len(again.Rows)
	}
	// The inputs must reach the paths that could alias: rows, discards and
	// rejections (whole records and batch messages).
	if rejected < 5 || rows < 20 {
		t.Errorf("the inputs made %d rejections and %d rows; want at least 5 and 20", rejected, rows)
	}
}
