package consumer

import (
	"testing"

	"github.com/segwarehouse/segwarehouse/schema"
)

// TestStagedTakeoff checks what a staged flush loads when it takes off: all
// of it while its partitions are still owned; otherwise only the chunks of
// partitions still owned by the same claim, with the batch to be built
// again (the staged one holds the others' rows and offsets).
func TestStagedTakeoff(t *testing.T) {
	p0 := &part{tp: tp{"t", 0}}
	p1 := &part{tp: tp{"t", 1}}
	p2 := &part{tp: tp{"t", 2}}
	b := &schema.Batch{Records: 3}
	st := &staged{chunks: []chunk{{p: p0}, {p: p1}, {p: p2}}, b: b}

	chunks, got := st.takeoff(map[tp]*part{p0.tp: p0, p1.tp: p1, p2.tp: p2})
	if len(chunks) != 3 || got != b {
		t.Errorf("all partitions owned: %d chunks, batch %p; want 3 and the staged batch %p", len(chunks), got, b)
	}

	// p1 revoked; p2 revoked and claimed again (a new part).
	chunks, got = st.takeoff(map[tp]*part{p0.tp: p0, p2.tp: {tp: p2.tp}})
	if len(chunks) != 1 || chunks[0].p != p0 {
		t.Errorf("after p1 was revoked and p2 claimed anew: chunks %v, want p0's alone", chunks)
	}
	if got != nil {
		t.Errorf("after partitions moved the staged batch was kept; want it built again")
	}

	if chunks, got = st.takeoff(map[tp]*part{}); len(chunks) != 0 || got != nil {
		t.Errorf("nothing owned: %d chunks, batch %v; want none", len(chunks), got)
	}
}
