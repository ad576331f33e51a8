package schema

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/segwarehouse/segwarehouse/internal/sample"
)

// Records share the decoders' text and column chunks: a record decoded
// earlier keeps its values while later ones fill and roll over the chunks
// (batches, identify rows and messages wider than a chunk's room
// included). Each record's output, printed
// right after it was decoded, must read the same once every record is
// decoded; and a track's tracks row stays the prefix of its event row.
func TestRecordsKeepTheirValuesAcrossChunks(t *testing.T) {
	t.Parallel()
	g := sample.New(11, 50, 500, sample.DefaultMix)
	var vals [][]byte
	for i := range 600 { // ~40 columns and ~500 bytes of text each: many chunks
		m := g.NextMap()
		if i%50 == 49 {
			// A track wider than a whole chunk: its columns
			// outgrow the slab into memory of their own.
			props := map[string]any{}
			for p := range 2100 {
				props[fmt.Sprintf("p%04d", p)] = fmt.Sprint("v", i, "-", p)
			}
			m = map[string]any{"type": "track", "event": "Wide", "messageId": fmt.Sprint("wide-", i), "userId": "u1", "properties": props}
		}
		js, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		vals = append(vals, js)
	}
	vals = append(vals, []byte(`{"batch":[{"type":"track","event":"In Batch","messageId":"b1","properties":{"a":"x"}},`+
		`{"type":"identify","userId":"u9","messageId":"b2","traits":{"plan":"pro"}}],"writeKey":"k"}`))
	dec, err := NewDecoder(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var got []*Decoded
	var printed []string
	for i, v := range vals {
		d := dec.Decode(&Record{Topic: "web", Partition: 1, Offset: int64(i), Timestamp: kafkaTS, Value: v})
		if len(d.Rows) == 0 {
			t.Fatalf("record %d: no rows (rejected: %+v)", i, d.Rejected)
		}
		got = append(got, d)
		printed = append(printed, fmt.Sprintf("%+v", *d))
	}
	for i, d := range got {
		if now := fmt.Sprintf("%+v", *d); now != printed[i] {
			t.Fatalf("record %d changed after later records were decoded:\n was %s\n now %s", i, printed[i], now)
		}
		rows := d.Rows
		for j := 0; j+1 < len(rows); j++ {
			if rows[j].Table.Table == "tracks" {
				n := len(rows[j].Row.Cols)
				if &rows[j].Row.Cols[0] != &rows[j+1].Row.Cols[0] || !reflect.DeepEqual(rows[j].Row.Cols, rows[j+1].Row.Cols[:n]) {
					t.Fatalf("record %d: the tracks row is not the prefix of the %s row", i, rows[j+1].Table)
				}
			}
		}
	}
}

// While the consumer encodes one flush's rows, the decoders write the next
// records into the same chunks' free parts: reading decoded records while
// the same decoders keep decoding is not a data race (go test -race), and
// the records read the same as right after they were decoded.
func TestDecodeWhileEarlierRecordsAreRead(t *testing.T) {
	t.Parallel()
	g := sample.New(13, 50, 500, sample.DefaultMix)
	vals := make([][]byte, 800)
	for i := range vals {
		js, err := json.Marshal(g.NextMap())
		if err != nil {
			t.Fatal(err)
		}
		vals[i] = js
	}
	dec, err := NewDecoder(Config{})
	if err != nil {
		t.Fatal(err)
	}
	type decoded struct {
		d       *Decoded
		printed string
	}
	const workers = 3
	out := make(chan decoded, len(vals))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(vals); i += workers {
				d := dec.Decode(&Record{Topic: "web", Offset: int64(i), Timestamp: kafkaTS, Value: vals[i]})
				out <- decoded{d, fmt.Sprintf("%+v", *d)}
			}
		}()
	}
	go func() { wg.Wait(); close(out) }()
	n := 0
	for r := range out { // read while the workers decode
		if now := fmt.Sprintf("%+v", *r.d); now != r.printed {
			t.Fatalf("a record changed after it was decoded:\n was %s\n now %s", r.printed, now)
		}
		if len(r.d.Rows) == 0 {
			t.Fatalf("no rows: %+v", r.d.Rejected)
		}
		n++
	}
	if n != len(vals) {
		t.Fatalf("%d records decoded, want %d", n, len(vals))
	}
}

// TestArenaStr checks the arena's one-pass copy and check at every length
// around its 4- and 8-byte words: plain text comes back as it was, a NUL
// or a non-ASCII byte at any position takes sanitize's path, and no string
// handed out is written over by the ones after it.
func TestArenaStr(t *testing.T) {
	t.Parallel()
	var a arena
	type got struct{ s, want string }
	var all []got
	for n := 0; n <= 40; n++ {
		plain := make([]byte, n)
		for i := range plain {
			plain[i] = byte('!' + (n+i)%90)
		}
		all = append(all, got{a.str(plain), string(plain)})
		for i := 0; i < n; i++ {
			for _, c := range []byte{0, 0x7f, 0x80, 0xc3, 0xff, 1} {
				b := append([]byte(nil), plain...)
				b[i] = c
				want := sanitize(b)
				if c == 0x7f || c == 1 {
					want = string(b) // ASCII, not NUL: kept as it is
				}
				all = append(all, got{a.str(b), want})
			}
		}
		if n >= 2 {
			b := append([]byte(nil), plain...)
			b[n-2], b[n-1] = 0xc3, 0xa9 // é, valid UTF-8
			all = append(all, got{a.str(b), string(b)})
		}
	}
	for _, g := range all {
		if g.s != g.want {
			t.Fatalf("arena.str gave %q, want %q", g.s, g.want)
		}
	}
}
