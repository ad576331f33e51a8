package consumer

import (
	"slices"
	"testing"

	"github.com/segwarehouse/segwarehouse/schema"
)

func TestSplit(t *testing.T) {
	t.Parallel()
	mk := func(p int32, from int64, offs ...int64) chunk {
		ch := chunk{p: &part{tp: tp{"t", p}}, from: from}
		for _, o := range offs {
			ch.recs = append(ch.recs, pending{d: &schema.Decoded{Pos: schema.Pos{Topic: "t", Partition: p, Offset: o}}})
		}
		return ch
	}
	tests := []struct {
		name   string
		chunks []chunk
	}{
		{"one partition", []chunk{mk(0, 10, 10, 11, 12, 15, 16)}},
		{"two records", []chunk{mk(0, -1, 3, 4)}},
		{"partitions of one record", []chunk{mk(0, 1, 1), mk(1, 5, 5), mk(2, -1, 0)}},
		{"mixed", []chunk{mk(0, 1, 1), mk(1, 5, 5, 6, 7), mk(2, -1, 0, 2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Split recursively down to single records, loading halves in
			// order: each piece must start where the partition stands.
			at := map[int32]int64{}
			var loaded []int64
			var walk func([]chunk)
			walk = func(cs []chunk) {
				n := 0
				for _, c := range cs {
					n += len(c.recs)
				}
				if n == 1 {
					c := cs[0]
					if want, ok := at[c.p.partition]; ok && c.from != want {
						t.Errorf("partition %d piece from %d, partition stands at %d", c.p.partition, c.from, want)
					}
					at[c.p.partition] = c.to()
					loaded = append(loaded, int64(c.p.partition)*100+c.recs[0].d.Pos.Offset)
					return
				}
				l, r := split(cs)
				if len(l) == 0 || len(r) == 0 {
					t.Fatalf("split %d records into %d and %d chunks", n, len(l), len(r))
				}
				walk(l)
				walk(r)
			}
			for _, c := range tt.chunks {
				at[c.p.partition] = c.from
			}
			walk(tt.chunks)
			var want []int64
			for _, c := range tt.chunks {
				for _, r := range c.recs {
					want = append(want, int64(c.p.partition)*100+r.d.Pos.Offset)
				}
			}
			slices.Sort(want)
			got := slices.Clone(loaded)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("loaded %v, want each of %v once", loaded, want)
			}
		})
	}
}
