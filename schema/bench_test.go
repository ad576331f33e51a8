package schema

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/segwarehouse/segwarehouse/internal/sample"
)

// typical returns a sample message of the given type, ~600–1,200 bytes.
func typical(b *testing.B, typ string) []byte {
	g := sample.New(7, 50, 1000, sample.DefaultMix)
	for i := 0; i < 10000; i++ {
		m := g.NextMap()
		if m["type"] == typ {
			js, _ := json.Marshal(m)
			return js
		}
	}
	b.Fatalf("no %s generated", typ)
	return nil
}

// BenchmarkDecode measures decode + route + flatten + name per event on one
// core (issue target: ≤ 3 µs for a typical track).
func BenchmarkDecode(b *testing.B) {
	dec, _ := NewDecoder(Config{})
	for _, typ := range []string{"track", "identify", "page"} {
		js := typical(b, typ)
		b.Run(typ, func(b *testing.B) {
			rec := &Record{Topic: "web", Timestamp: time.Now(), Value: js}
			b.SetBytes(int64(len(js)))
			b.ReportAllocs()
			for b.Loop() {
				d := dec.Decode(rec)
				if len(d.Rows) == 0 {
					b.Fatal("no rows")
				}
			}
		})
	}
}

// BenchmarkDecodeStdlibBaseline is the alternative measured: encoding/json
// into map[string]any (with UseNumber semantics lost), without any of the
// flattening. It is here so the README's comparison can be rerun.
func BenchmarkDecodeStdlibBaseline(b *testing.B) {
	js := typical(b, "track")
	b.SetBytes(int64(len(js)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(js, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBatchBuild measures building one flush's batch (dedup by id,
// users/accounts rows merged) from 20,000 decoded records of the
// benchmark's mix.
// sampleDecoded returns n decoded events of the default mix (50 event
// names, 20,000 users) on 6 partitions.
func sampleDecoded(n int) []*Decoded {
	dec, _ := NewDecoder(Config{})
	g := sample.New(7, 50, 20000, sample.DefaultMix)
	decoded := make([]*Decoded, n)
	for i := range decoded {
		decoded[i] = dec.Decode(&Record{Topic: "web", Partition: int32(i % 6), Offset: int64(i), Timestamp: time.Now(), Value: g.Next()})
	}
	return decoded
}

func BenchmarkBatchBuild(b *testing.B) {
	decoded := sampleDecoded(20000)
	for _, expect := range []bool{false, true} {
		b.Run(map[bool]string{false: "grown", true: "expected"}[expect], func(b *testing.B) {
			var sz Sizes
			b.ReportAllocs()
			for b.Loop() {
				bb := NewBatchBuilder("g", "o")
				if expect {
					bb.Expect(sz)
				}
				for _, d := range decoded {
					bb.Add(d)
				}
				if bb.Rows() == 0 {
					b.Fatal("no rows")
				}
				sz = bb.Batch().Sizes()
			}
		})
	}
}

// BenchmarkPrepareCast compares the two ways a flush's batch of 10,000
// events is cast to a warehouse that has every table and column: Plan
// (finding nothing to change) then Conform, or ConformKnown's one pass.
func BenchmarkPrepareCast(b *testing.B) {
	decoded := sampleDecoded(10000)
	batch := func() *Batch {
		bb := NewBatchBuilder("g", "o")
		for _, d := range decoded {
			bb.Add(d)
		}
		return bb.Batch()
	}
	w := NewWarehouse()
	apply(w, Plan(w, batch()))
	for _, known := range []bool{false, true} {
		b.Run(map[bool]string{false: "plan+conform", true: "known"}[known], func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				bt := batch()
				b.StartTimer()
				if known {
					if _, ok := ConformKnown(w, bt); !ok {
						b.Fatal("the warehouse lacks a column")
					}
				} else {
					if len(Plan(w, bt)) != 0 {
						b.Fatal("the warehouse lacks a column")
					}
					Conform(w, bt)
				}
			}
		})
	}
}
