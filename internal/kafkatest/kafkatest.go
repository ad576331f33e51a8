// Package kafkatest holds test helpers around an in-process kfake cluster:
// start one per test, produce to it, read its end and committed offsets.
// Every helper takes a testing.TB, calls t.Helper, fails the test on error
// and cleans up with t.Cleanup. Only tests import it.
//
//	addrs := kafkatest.NewCluster(t, map[string]int32{"events": 6})
//	kafkatest.Produce(t, addrs, "events", &kgo.Record{Partition: 2, Value: []byte(`{}`)})
//	end := kafkatest.EndOffsets(t, addrs, "events") // partition → next offset
package kafkatest

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// timeout bounds every admin call of a helper.
const timeout = 30 * time.Second

// Start starts an in-process kfake cluster (one broker) seeded with topics
// (name → partitions) and closes it when the test ends. Group session
// timeouts down to 100ms are accepted so that tests can rebalance quickly.
// opts come after the defaults and win.
func Start(t testing.TB, topics map[string]int32, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	all := []kfake.Opt{kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100 * time.Millisecond)}
	for _, name := range slices.Sorted(maps.Keys(topics)) {
		all = append(all, kfake.SeedTopics(topics[name], name))
	}
	all = append(all, opts...)
	c, err := kfake.NewCluster(all...)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// NewCluster starts a cluster like Start and returns its broker addresses.
func NewCluster(t testing.TB, topics map[string]int32) (addrs []string) {
	t.Helper()
	return Start(t, topics).ListenAddrs()
}

// Client returns a client of the cluster at addrs, closed when the test
// ends. opts come after SeedBrokers.
func Client(t testing.TB, addrs []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
	if err != nil {
		t.Fatalf("creating a kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Producer returns a client that produces each record to the partition in
// its Partition field (kgo.ManualPartitioner), for tests that produce
// continuously.
func Producer(t testing.TB, addrs []string) *kgo.Client {
	t.Helper()
	return Client(t, addrs, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
}

// Produce writes recs to topic and waits for them to be acknowledged; each
// record goes to the partition in its Partition field, and its Offset is
// set on return.
func Produce(t testing.TB, addrs []string, topic string, recs ...*kgo.Record) {
	t.Helper()
	ProduceWith(t, Producer(t, addrs), topic, recs...)
}

// ProduceWith is Produce through an existing client (see Producer).
func ProduceWith(t testing.TB, cl *kgo.Client, topic string, recs ...*kgo.Record) {
	t.Helper()
	for _, r := range recs {
		r.Topic = topic
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing to %s: %v", topic, err)
	}
}

// EndOffsets returns each partition's end offset (the next offset to be
// written) of topic.
func EndOffsets(t testing.TB, addrs []string, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	listed, err := kadm.NewClient(Client(t, addrs)).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("listing end offsets of %s: %v", topic, err)
	}
	out := make(map[int32]int64)
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("listing end offsets of %s/%d: %v", topic, o.Partition, o.Err)
		}
		out[o.Partition] = o.Offset
	})
	return out
}

// CommittedOffsets returns the offsets group has committed in Kafka for
// topic; partitions without a commit (or an unknown group) are absent.
func CommittedOffsets(t testing.TB, addrs []string, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := kadm.NewClient(Client(t, addrs)).FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{}
	}
	if err != nil {
		t.Fatalf("fetching offsets of group %s: %v", group, err)
	}
	out := make(map[int32]int64)
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Err != nil {
			t.Fatalf("fetching offsets of group %s, %s/%d: %v", group, o.Topic, o.Partition, o.Err)
		}
		if o.Topic == topic && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out
}

// CommitOffsets sets group's committed offsets of topic in Kafka (partition
// → offset), as an admin would; the group must have no live members.
func CommitOffsets(t testing.TB, addrs []string, group, topic string, offsets map[int32]int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var os kadm.Offsets
	for p, o := range offsets {
		os.AddOffset(topic, p, o, -1)
	}
	if err := kadm.NewClient(Client(t, addrs)).CommitAllOffsets(ctx, group, os); err != nil {
		t.Fatalf("committing offsets of group %s: %v", group, err)
	}
}

// TopicNames maps the cluster's topic ids to names, for control functions
// that see requests naming topics by id (OffsetCommit v10+, Fetch v13+).
func TopicNames(t testing.TB, addrs []string) map[[16]byte]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	details, err := kadm.NewClient(Client(t, addrs)).ListTopics(ctx)
	if err != nil {
		t.Fatalf("listing topics: %v", err)
	}
	out := make(map[[16]byte]string, len(details))
	for name, d := range details {
		out[d.ID] = name
	}
	return out
}

// Eventually polls cond every 10ms until it holds, failing the test with
// what (and the last explanation cond gave) after limit. It is a wait, not
// a timing assertion: limit should be generous.
func Eventually(t testing.TB, limit time.Duration, what string, cond func() (ok bool, why string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %s for %s: %s", limit, what, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
