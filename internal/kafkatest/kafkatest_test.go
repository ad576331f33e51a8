package kafkatest_test

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segwarehouse/segwarehouse/internal/kafkatest"
)

func TestHelpers(t *testing.T) {
	t.Parallel()
	addrs := kafkatest.NewCluster(t, map[string]int32{"a": 3, "b": 1})
	recs := []*kgo.Record{{Partition: 2, Value: []byte("x")}, {Partition: 2, Value: []byte("y")}, {Partition: 0, Value: []byte("z")}}
	kafkatest.Produce(t, addrs, "a", recs...)
	if recs[1].Offset != 1 || recs[1].Topic != "a" || recs[2].Offset != 0 {
		t.Errorf("produced offsets %d %d, want 1 0", recs[1].Offset, recs[2].Offset)
	}
	end := kafkatest.EndOffsets(t, addrs, "a")
	if end[0] != 1 || end[1] != 0 || end[2] != 2 {
		t.Errorf("end offsets %v", end)
	}
	if got := kafkatest.CommittedOffsets(t, addrs, "g", "a"); len(got) != 0 {
		t.Errorf("committed before any commit: %v", got)
	}
	kafkatest.CommitOffsets(t, addrs, "g", "a", map[int32]int64{2: 1})
	if got := kafkatest.CommittedOffsets(t, addrs, "g", "a"); len(got) != 1 || got[2] != 1 {
		t.Errorf("committed %v, want 2:1", got)
	}
	names := kafkatest.TopicNames(t, addrs)
	found := map[string]bool{}
	for _, n := range names {
		found[n] = true
	}
	if !found["a"] || !found["b"] {
		t.Errorf("topic names %v", names)
	}
}
