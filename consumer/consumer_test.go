package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/segwarehouse/segwarehouse/consumer"
	"github.com/segwarehouse/segwarehouse/internal/kafkatest"
	"github.com/segwarehouse/segwarehouse/schema"
)

var envLog = os.Getenv("SEGWH_TEST_LOG") == "1"

var _ consumer.Decoder = (*schema.Decoder)(nil)

// TestBasicFlow loads 6 partitions, with bad records and a source header,
// and checks every invariant and the stats.
func TestBasicFlow(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 6)
	w.watchCommits()
	const n = 900
	w.produce("m", n, func(i int, r *kgo.Record) {
		switch {
		case i%50 == 7:
			r.Value = []byte(`not json`)
		case i%3 == 0:
			r.Headers = []kgo.RecordHeader{{Key: "x-source", Value: []byte("web")}}
		}
	})
	r := w.start("a", w.config(), consumer.WithSourceHeader("x-source"))
	w.waitCaughtUp()
	kafkatest.Eventually(t, 10*time.Second, "lag 0 on every partition", func() (bool, string) {
		st := r.c.Stats()
		if len(st.Lag) != 6 {
			return false, fmt.Sprint(st.Lag)
		}
		for _, l := range st.Lag {
			if l.Lag != 0 {
				return false, fmt.Sprint(st.Lag)
			}
		}
		return true, ""
	})
	if err := r.c.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
	r.stop(t)
	w.check(w.allProduced())

	st := r.c.Stats()
	bad := 0
	for i := range n {
		if i%50 == 7 {
			bad++
		}
	}
	web := 0
	for i := range n {
		if i%50 != 7 && i%3 == 0 {
			web++
		}
	}
	if st.Records != n || st.Rejected != int64(bad) || st.Messages != int64(n-bad) {
		t.Errorf("stats records %d rejected %d messages %d; want %d, %d, %d", st.Records, st.Rejected, st.Messages, n, bad, n-bad)
	}
	if st.Rows["web.events"] != int64(web) || st.Rows["src.events"] != int64(n-bad-web) {
		t.Errorf("stats rows %v; want web.events %d, src.events %d", st.Rows, web, n-bad-web)
	}
	if st.Batches == 0 || st.Rebalances == 0 || st.LastFlush <= 0 {
		t.Errorf("stats %+v: want batches, rebalances and a last flush duration", st)
	}
}

// TestFlushTriggers checks that each trigger alone ends flushes: with the
// other two out of reach, every flush before shutdown met its trigger.
func TestFlushTriggers(t *testing.T) {
	t.Parallel()
	pad := strings.Repeat("x", 80)
	tests := []struct {
		name    string
		mut     func(*consumer.Config)
		n       int
		waitFor int // records loaded before checking (the rest may wait for the trigger)
		ok      func(b loadedBatch, cfg consumer.Config) bool
	}{
		{
			name:    "rows",
			mut:     func(c *consumer.Config) { c.FlushRows = 25; c.FlushInterval = time.Hour },
			n:       300,
			waitFor: 300 - 24,
			ok:      func(b loadedBatch, c consumer.Config) bool { return b.rows >= c.FlushRows },
		},
		{
			name:    "bytes",
			mut:     func(c *consumer.Config) { c.FlushBytes = 2000; c.FlushInterval = time.Hour },
			n:       300,
			waitFor: 300 - 2000/90,
			ok:      func(b loadedBatch, c consumer.Config) bool { return b.bytes >= c.FlushBytes && b.rows < c.FlushRows },
		},
		{
			name: "interval",
			mut: func(c *consumer.Config) {
				c.FlushRows = 1 << 20
				c.FlushBytes = 1 << 30
				c.FlushInterval = 50 * time.Millisecond
			},
			n:       40,
			waitFor: 40,
			ok:      func(b loadedBatch, c consumer.Config) bool { return b.rows < c.FlushRows && b.bytes < c.FlushBytes },
		},
		{
			// The interval is an hour and no flush fills up: only the
			// quiet input after the last record can end them.
			name: "quiet",
			mut: func(c *consumer.Config) {
				c.FlushRows = 1000
				c.FlushBytes = 1 << 30
				c.FlushInterval = time.Hour
				c.FlushQuiet = 100 * time.Millisecond
			},
			n:       300,
			waitFor: 300,
			ok:      func(b loadedBatch, c consumer.Config) bool { return b.rows*10 >= c.FlushRows && b.rows < c.FlushRows },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, 1)
			w.watchCommits()
			w.produce("m", tt.n, func(i int, r *kgo.Record) {
				id := fmt.Sprintf("m-%d", i)
				r.Value = []byte(`{"id":"` + id + `","pad":"` + pad[:88-len(id)-len(`{"id":"","pad":""}`)] + `"}`)
			})
			cfg := w.config()
			tt.mut(&cfg)
			r := w.start("a", cfg)
			w.waitLoaded(tt.waitFor)
			w.sink.mu.Lock()
			for i, b := range w.sink.batches {
				if !tt.ok(b, cfg) {
					t.Errorf("flush %d (%d records, %d rows, %d bytes) was not ended by %s", i, b.records, b.rows, b.bytes, tt.name)
				}
			}
			w.sink.mu.Unlock()
			r.stop(t) // flushes the rest
			w.check(w.allProduced())
		})
	}
}

// TestFlushQuietNeedsATenth: fewer pending rows than a tenth of
// FlushRows wait for the interval even when the input is quiet, so that a
// trickle is not loaded one record per flush.
func TestFlushQuietNeedsATenth(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 1)
	w.produce("m", 40, nil)
	cfg := w.config()
	cfg.FlushRows, cfg.FlushInterval, cfg.FlushQuiet = 1000, time.Hour, 20*time.Millisecond
	r := w.start("a", cfg)
	kafkatest.Eventually(t, 30*time.Second, "the records polled", func() (bool, string) {
		st := r.c.Stats()
		return st.Records >= 40, fmt.Sprintf("%d polled", st.Records)
	})
	time.Sleep(25 * cfg.FlushQuiet) // quiet many times over
	if n := w.sink.loadedCount(); n != 0 {
		t.Fatalf("%d records loaded: a quiet input ended a flush of 40 rows, under a tenth of %d", n, cfg.FlushRows)
	}
	r.stop(t) // flushes them
	w.check(w.allProduced())
}

// TestStartFrom checks where a partition without a stored offset starts.
func TestStartFrom(t *testing.T) {
	t.Parallel()
	now := time.Now()
	old, recent := now.Add(-3*time.Hour), now.Add(-time.Hour)
	tests := []struct {
		name      string
		startFrom string
		wantOld   bool // records stamped 3h ago are loaded
		latest    bool
	}{
		{name: "earliest", startFrom: "earliest", wantOld: true},
		{name: "latest", startFrom: "latest", latest: true},
		{name: "timestamp", startFrom: now.Add(-2 * time.Hour).UTC().Format(time.RFC3339)},
		{name: "relative hours", startFrom: "2 hours ago"},
		{name: "relative days", startFrom: "1 day ago", wantOld: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, 2)
			w.watchCommits()
			w.produce("old", 10, func(_ int, r *kgo.Record) { r.Timestamp = old })
			w.produce("recent", 10, func(_ int, r *kgo.Record) { r.Timestamp = recent })
			cfg := w.config()
			cfg.StartFrom = tt.startFrom
			r := w.start("a", cfg)
			if tt.latest {
				// Keep producing until the consumer, positioned at the end
				// of each partition at some moment, has loaded from each.
				kafkatest.Eventually(t, 30*time.Second, "records produced after start loaded from every partition", func() (bool, string) {
					stored := w.sink.storedOf(w.topic)
					if len(stored) == int(w.parts) {
						return true, ""
					}
					w.produce("new", 2, nil)
					time.Sleep(20 * time.Millisecond)
					return false, fmt.Sprintf("stored %v", stored)
				})
			}
			w.waitCaughtUp()
			r.stop(t)

			want := make(map[int32][]produced)
			stored := w.sink.storedOf(w.topic)
			for p, recs := range w.allProduced() {
				for _, pr := range recs {
					isOld := strings.HasPrefix(pr.id, "old-")
					switch {
					case tt.latest && !strings.HasPrefix(pr.id, "new-"):
					case tt.latest:
						// A suffix of the new records: from the first one loaded.
						if w.loadedOffset(p, pr.offset) || len(want[p]) > 0 {
							want[p] = append(want[p], pr)
						}
					case isOld && !tt.wantOld:
					default:
						want[p] = append(want[p], pr)
					}
				}
				if len(want[p]) == 0 {
					if _, ok := stored[p]; ok {
						t.Errorf("partition %d: nothing to load but Postgres holds %d", p, stored[p])
					}
				}
			}
			w.check(want)
		})
	}
}

func (w *world) loadedOffset(p int32, off int64) bool {
	w.sink.mu.Lock()
	defer w.sink.mu.Unlock()
	for _, o := range w.sink.seq[tpk{w.topic, p}] {
		if o == off {
			return true
		}
	}
	return false
}

// TestResumeFromPostgres proves the start offset comes from the sink, not
// from Kafka: Kafka's committed offsets are set to other values (one
// behind, one at the end) and only the records after Postgres's offsets
// are loaded; Kafka's offsets are then brought in line.
func TestResumeFromPostgres(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 2)
	w.produce("m", 40, nil)
	all := w.allProduced()
	w.sink.stored[tpk{w.topic, 0}] = 5
	w.sink.stored[tpk{w.topic, 1}] = 12
	kafkatest.CommitOffsets(t, w.addrs, w.group, w.topic, map[int32]int64{0: 0, 1: 20})
	w.watchCommits()
	// Seeded offsets must not look like loads in check.
	want := map[int32][]produced{0: all[0][5:], 1: all[1][12:]}

	r := w.start("a", w.config())
	w.waitCaughtUp()
	r.stop(t)
	w.check(want)
}

// TestRebalance runs three consumers in one group while producing: one
// joins early, one later, and the first leaves; every record is loaded
// exactly once.
func TestRebalance(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 6)
	w.watchCommits()
	cfg := w.config()
	cfg.FlushRows = 50
	a := w.start("a", cfg)
	var b, c *runner
	for round := range 10 {
		w.produce("m", 200, nil)
		switch round {
		case 2:
			b = w.start("b", cfg)
		case 4:
			c = w.start("c", cfg)
		case 7:
			a.stop(t)
		}
		time.Sleep(100 * time.Millisecond) // pacing, so that rounds overlap consumption
	}
	w.waitCaughtUp()
	b.stop(t)
	c.stop(t)
	w.check(w.allProduced())
	if a.c.Stats().Rebalances < 2 {
		t.Errorf("consumer a saw %d assignments; want a rebalance", a.c.Stats().Rebalances)
	}
}

// TestStagedFlush slows the sink down so that the next flush is due while
// one is in the air: it is then built and prepared ahead (staged), and
// loaded with its prepared state when the flight lands. Consumers join and
// leave meanwhile; every record must still be loaded once, in order, and no
// load may be fenced (release waits for the flight; a staged flush leaves
// out partitions that moved, TestStagedTakeoff).
func TestStagedFlush(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 4)
	w.watchCommits()
	// While consumers join, a staged flush waits in the sink long enough
	// that, had it kept a partition revoked while it was staged, the
	// partition's new owner would have claimed it by then and the fence
	// would refuse it.
	var joining atomic.Bool
	w.sink.setHook(func(_ context.Context, b *schema.Batch) error {
		if b.Prepared != nil && joining.Load() {
			time.Sleep(time.Second)
		} else {
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	})
	cfg := w.config()
	cfg.FlushRows = 40
	cfg.PollRecords = 40
	w.produce("m", 1000, nil)
	a := w.start("a", cfg)
	kafkatest.Eventually(t, 30*time.Second, "a staged flush loaded", func() (bool, string) {
		w.sink.mu.Lock()
		defer w.sink.mu.Unlock()
		return w.sink.usedPrep > 0, fmt.Sprintf("%d prepared, %d loaded prepared", w.sink.prepared, w.sink.usedPrep)
	})
	joining.Store(true)
	w.produce("m", 1000, nil) // a backlog, so that a flush is staged while b joins
	b := w.start("b", cfg)
	kafkatest.Eventually(t, 30*time.Second, "b owning a partition", func() (bool, string) {
		for p := range int32(4) {
			if w.sink.ownerOf(w.topic, p) != w.sink.ownerOf(w.topic, 0) {
				return true, ""
			}
		}
		return false, "not yet"
	})
	time.Sleep(2 * time.Second)
	joining.Store(false)
	w.produce("m", 500, nil)
	time.Sleep(200 * time.Millisecond)
	a.stop(t)
	w.produce("m", 300, nil)
	w.waitCaughtUp()
	b.stop(t)
	w.check(w.allProduced())

	w.sink.mu.Lock()
	defer w.sink.mu.Unlock()
	if w.sink.fenced != 0 {
		t.Errorf("%d loads fenced: a staged flush took off with a partition no longer its consumer's", w.sink.fenced)
	}
	if w.sink.usedPrep == 0 || w.sink.usedPrep > w.sink.prepared {
		t.Errorf("%d loads of prepared batches, %d batches prepared: want some, and no more than were prepared", w.sink.usedPrep, w.sink.prepared)
	}
}

// TestStagedFlushWhileRevoking: a flight covering both partitions is held
// in the sink while the next flush is staged; b joins, and a's revoke of a
// partition waits for the held flight. When it lands, the staged flush
// must take off without the partition being revoked: with it, it would be
// fenced once b claims the partition, and a's whole session would restart.
func TestStagedFlushWhileRevoking(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 2)
	cfg := w.config()
	cfg.FlushRows = 400
	cfg.PollRecords = 40
	cfg.FlushInterval = 300 * time.Millisecond
	blocked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var bJoined atomic.Bool
	w.sink.setHook(func(ctx context.Context, b *schema.Batch) error {
		if b.Owner == "A" && len(b.Offsets) == 2 && b.Prepared == nil {
			once.Do(func() { close(blocked); <-release })
		}
		if b.Owner == "A" && b.Prepared != nil && bJoined.Load() {
			time.Sleep(1500 * time.Millisecond) // a staged flush that takes a while
		}
		return nil
	})
	w.produce("m", 60, nil) // the first flight: both partitions, by the interval
	a := w.start("a", cfg, consumer.WithOwner("A"))
	select {
	case <-blocked:
	case <-time.After(20 * time.Second):
		t.Fatal("no flight of A covering both partitions")
	}
	w.produce("m", 600, nil) // a backlog: the next flush (both partitions) is staged
	kafkatest.Eventually(t, 10*time.Second, "a flush staged", func() (bool, string) {
		w.sink.mu.Lock()
		defer w.sink.mu.Unlock()
		return w.sink.prepared > 0, ""
	})
	bJoined.Store(true)
	b := w.start("b", cfg, consumer.WithOwner("B"))
	time.Sleep(1500 * time.Millisecond) // a's revoke now waits for the held flight
	close(release)
	kafkatest.Eventually(t, 30*time.Second, "b owning a partition", func() (bool, string) {
		return w.sink.ownerOf(w.topic, 0) == "B" || w.sink.ownerOf(w.topic, 1) == "B", ""
	})
	w.waitCaughtUp()
	a.stop(t)
	b.stop(t)
	w.check(w.allProduced())
	if n := w.sink.fencedCount(); n != 0 {
		t.Errorf("%d loads fenced: a staged flush took off with a partition being revoked", n)
	}
}

// TestZombieFenced holds a flush open in the sink while its partition moves
// to another consumer; when it is let go the fence refuses it, its consumer
// restarts from Postgres, and nothing is loaded twice.
func TestZombieFenced(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 2)
	w.watchCommits()
	cfg := w.config()
	cfg.FlushInterval = 200 * time.Millisecond // so that a flush covers both partitions
	w.produce("m", 20, nil)
	a := w.start("a", cfg, consumer.WithOwner("A"))
	w.waitLoaded(20)

	blocked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	w.sink.setHook(func(ctx context.Context, b *schema.Batch) error {
		if b.Owner == "A" && len(b.Offsets) == 2 {
			once.Do(func() {
				close(blocked)
				<-release
			})
		}
		return nil
	})
	kafkatest.Eventually(t, 30*time.Second, "a flush of A covering both partitions held in the sink", func() (bool, string) {
		select {
		case <-blocked:
			return true, ""
		default:
		}
		w.produce("m", 2, nil)
		time.Sleep(50 * time.Millisecond)
		return false, "not yet"
	})

	b := w.start("b", cfg, consumer.WithOwner("B"))
	kafkatest.Eventually(t, 30*time.Second, "B owning a partition in Postgres", func() (bool, string) {
		return w.sink.ownerOf(w.topic, 0) == "B" || w.sink.ownerOf(w.topic, 1) == "B", "not yet"
	})
	close(release)
	kafkatest.Eventually(t, 30*time.Second, "A's held flush fenced", func() (bool, string) {
		return w.sink.fencedCount() > 0, "not fenced"
	})
	w.produce("m", 40, nil)
	w.waitCaughtUp()
	a.stop(t)
	b.stop(t)
	w.check(w.allProduced())
}

// TestRetryableErrors makes the sink fail; the flush is retried until it
// lands, nothing is lost, and Ready reports the failure meanwhile.
func TestRetryableErrors(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 3)
	w.watchCommits()
	var c atomic.Pointer[consumer.Consumer]
	var calls atomic.Int32
	readyErrs := make(chan error, 10)
	w.sink.setHook(func(ctx context.Context, b *schema.Batch) error {
		n := calls.Add(1)
		if n > 1 && n <= 4 {
			readyErrs <- c.Load().Ready() // after a failed attempt
		}
		if n <= 3 {
			return fmt.Errorf("loading: %w", errDown)
		}
		return nil
	})
	r := w.start("a", w.config())
	c.Store(r.c)
	w.produce("m", 300, nil)
	w.waitCaughtUp()
	for range 3 {
		if err := <-readyErrs; err == nil || !strings.Contains(err.Error(), "sink failing") {
			t.Errorf("Ready during retries = %v; want a sink failure", err)
		}
	}
	kafkatest.Eventually(t, 10*time.Second, "ready after recovery", func() (bool, string) {
		err := r.c.Ready()
		return err == nil, fmt.Sprint(err)
	})
	if st := r.c.Stats(); st.Retries < 3 {
		t.Errorf("stats retries %d, want ≥ 3", st.Retries)
	}
	r.stop(t)
	w.check(w.allProduced())
}

// TestPoisonIsolated makes the sink refuse three records; each is isolated,
// rejected with the sink's error and its raw value, and its neighbours load.
func TestPoisonIsolated(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 2)
	w.watchCommits()
	poison := map[int]bool{17: true, 18: true, 150: true}
	w.produce("m", 200, func(i int, r *kgo.Record) {
		if poison[i] {
			r.Value = []byte(fmt.Sprintf(`{"id":"poison-%d"}`, i))
		}
	})
	r := w.start("a", w.config())
	w.waitCaughtUp()
	r.stop(t)
	w.check(w.allProduced())

	w.sink.mu.Lock()
	defer w.sink.mu.Unlock()
	if len(w.sink.rejected) != len(poison) {
		t.Fatalf("rejected %d records, want %d: %+v", len(w.sink.rejected), len(poison), w.sink.rejected)
	}
	for _, rj := range w.sink.rejected {
		if !strings.HasPrefix(string(rj.Raw), `{"id":"poison-`) || !strings.Contains(rj.Reason, "invalid input syntax") {
			t.Errorf("rejected %+v: want the raw poison record and the sink's error as reason", rj)
		}
	}
	if st := r.c.Stats(); st.Rejected != int64(len(poison)) {
		t.Errorf("stats rejected %d, want %d", st.Rejected, len(poison))
	}
	// The three re-reads share one client, closed when Run returned.
	if n := consumer.RefetchClients(r.c); n != 1 {
		t.Errorf("made %d clients to read %d refused records again, want 1", n, len(poison))
	}
	if consumer.RefetchOpen(r.c) {
		t.Error("the client for re-reads is still open after Run returned")
	}
}

// TestPoisonGoneFromKafka deletes a poison record from Kafka after it was
// polled: its rejection, which reads the raw value again from Kafka, says
// the value is gone instead of waiting for it, and nothing else is lost.
func TestPoisonGoneFromKafka(t *testing.T) {
	t.Parallel()
	// The poison in the middle: the first record Kafka returns is past it.
	// Last: Kafka returns nothing, and its log start says it is gone.
	for _, poisonAt := range []int{11, 29} {
		t.Run(fmt.Sprint("poison at ", poisonAt), func(t *testing.T) {
			t.Parallel()
			testPoisonGone(t, poisonAt)
		})
	}
}

// TestPoisonTopicDeleted deletes the topic while its poison record waits
// to be read again for its rejection: the rejection is stored without the
// raw value once Kafka has not known the topic for a while, instead of
// holding the flush (and every other partition's loading) until shutdown.
func TestPoisonTopicDeleted(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 1)
	w.produce("m", 30, func(i int, r *kgo.Record) {
		if i == 17 {
			r.Value = []byte(`{"id":"poison-deleted"}`)
		}
	})
	adm := kadm.NewClient(kafkatest.Client(t, w.addrs))
	seen := w.onceSinkSees("poison-deleted", func(ctx context.Context, _ schema.Row) error {
		resp, err := adm.DeleteTopics(ctx, w.topic)
		if err == nil {
			err = resp.Error()
		}
		return err
	})
	r := w.start("a", w.config(), consumer.WithTopicGone(2*time.Second))
	kafkatest.Eventually(t, 60*time.Second, "the poison record rejected", func() (bool, string) {
		w.sink.mu.Lock()
		defer w.sink.mu.Unlock()
		return len(w.sink.rejected) > 0, fmt.Sprintf("%d rejected", len(w.sink.rejected))
	})
	r.stop(t)
	if err := seen(); err != nil {
		t.Fatalf("DeleteTopics: %v", err)
	}
	w.sink.mu.Lock()
	defer w.sink.mu.Unlock()
	if len(w.sink.rejected) != 1 {
		t.Fatalf("rejected %d records, want 1: %+v", len(w.sink.rejected), w.sink.rejected)
	}
	// The flush was not held: every offset through the poison (and those
	// after it that the flush held) loaded once, in order.
	if len(w.sink.seq) != 1 {
		t.Errorf("offsets loaded for %d partitions, want 1", len(w.sink.seq))
	}
	for k, offs := range w.sink.seq {
		contiguous := len(offs) >= 18
		for i, o := range offs {
			contiguous = contiguous && o == int64(i)
		}
		if !contiguous {
			t.Errorf("partition %d loaded offsets %v, want 0, 1, … through at least 17", k.partition, offs)
		}
	}
	rj := w.sink.rejected[0]
	if rj.Raw != nil || rj.Pos.Offset != 17 || !strings.Contains(rj.Reason, "invalid input syntax") ||
		!strings.Contains(rj.Reason, "raw value not stored: the record is no longer in Kafka") || !strings.Contains(rj.Reason, "has not known the topic for 2s") {
		t.Errorf("rejected %+v: want offset 17, no raw value, the sink's error and why the raw value is missing", rj)
	}
}

func testPoisonGone(t *testing.T, poisonAt int) {
	w := newWorld(t, 1)
	w.watchCommits()
	w.produce("m", 30, func(i int, r *kgo.Record) {
		if i == poisonAt {
			r.Value = []byte(`{"id":"poison-gone"}`)
		}
	})
	adm := kadm.NewClient(kafkatest.Client(t, w.addrs))
	seen := w.onceSinkSees("poison-gone", func(ctx context.Context, r schema.Row) error {
		// Records up to the poison were polled already (the batch holds
		// them), so the group's fetch position is past the new log start.
		var o kadm.Offsets
		o.AddOffset(w.topic, 0, r.Pos.Offset+1, -1)
		resp, err := adm.DeleteRecords(ctx, o)
		if err == nil {
			err = resp.Error()
		}
		return err
	})
	r := w.start("a", w.config())
	w.waitCaughtUp()
	r.stop(t)
	if err := seen(); err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	w.check(w.allProduced())
	w.sink.mu.Lock()
	defer w.sink.mu.Unlock()
	if len(w.sink.rejected) != 1 {
		t.Fatalf("rejected %d records, want 1: %+v", len(w.sink.rejected), w.sink.rejected)
	}
	rj := w.sink.rejected[0]
	if rj.Raw != nil || !strings.Contains(rj.Reason, "invalid input syntax") || !strings.Contains(rj.Reason, "raw value not stored: the record is no longer in Kafka") {
		t.Errorf("rejected %+v: want no raw value, the sink's error and why the raw value is missing", rj)
	}
}

// TestShutdownRestart stops a consumer mid-stream, checks that its final
// offsets are in Kafka, and lets another finish: nothing lost or doubled.
func TestShutdownRestart(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 6)
	w.watchCommits()
	cfg := w.config()
	cfg.FlushRows = 40
	w.produce("m", 1500, nil)
	a := w.start("a", cfg)
	w.waitLoaded(300)
	a.stop(t)

	stored := w.sink.storedOf(w.topic)
	committed := kafkatest.CommittedOffsets(t, w.addrs, w.group, w.topic)
	for p, off := range stored {
		if committed[p] != off {
			t.Errorf("after shutdown, partition %d: Kafka committed %d, Postgres holds %d", p, committed[p], off)
		}
	}

	w.produce("m", 300, nil)
	b := w.start("b", cfg)
	w.waitCaughtUp()
	b.stop(t)
	w.check(w.allProduced())
}

// TestKafkaFaults injects broker failures with kfake's ControlKey on Fetch
// and OffsetCommit; the invariants hold.
func TestKafkaFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		inject func(w *world)
	}{
		{
			name: "fetch connection closed",
			inject: func(w *world) {
				var n atomic.Int32
				w.cluster.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
					w.cluster.KeepControl()
					if k := n.Add(1); k%4 == 0 && k < 40 {
						return nil, errors.New("injected fetch failure"), true
					}
					return nil, nil, false
				})
			},
		},
		{
			name: "fetch partition errors",
			inject: func(w *world) {
				var n atomic.Int32
				w.cluster.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
					w.cluster.KeepControl()
					req := kreq.(*kmsg.FetchRequest)
					if k := n.Add(1); k%3 != 0 || k > 30 || len(req.Topics) == 0 {
						return nil, nil, false
					}
					resp := req.ResponseKind().(*kmsg.FetchResponse)
					for _, rt := range req.Topics {
						st := kmsg.NewFetchResponseTopic()
						st.Topic, st.TopicID = rt.Topic, rt.TopicID
						for _, rp := range rt.Partitions {
							sp := kmsg.NewFetchResponseTopicPartition()
							sp.Partition = rp.Partition
							sp.ErrorCode = kerr.NotLeaderForPartition.Code
							st.Partitions = append(st.Partitions, sp)
						}
						resp.Topics = append(resp.Topics, st)
					}
					return resp, nil, true
				})
			},
		},
		{
			name: "offset commit errors",
			inject: func(w *world) {
				var n atomic.Int32
				w.cluster.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
					w.cluster.KeepControl()
					req := kreq.(*kmsg.OffsetCommitRequest)
					if k := n.Add(1); k != 2 && k != 4 {
						return nil, nil, false
					}
					resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
					for _, rt := range req.Topics {
						st := kmsg.NewOffsetCommitResponseTopic()
						st.Topic, st.TopicID = rt.Topic, rt.TopicID
						for _, rp := range rt.Partitions {
							sp := kmsg.NewOffsetCommitResponseTopicPartition()
							sp.Partition = rp.Partition
							sp.ErrorCode = kerr.UnknownServerError.Code
							st.Partitions = append(st.Partitions, sp)
						}
						resp.Topics = append(resp.Topics, st)
					}
					return resp, nil, true
				})
			},
		},
		{
			name: "offset commit connection closed",
			inject: func(w *world) {
				var n atomic.Int32
				w.cluster.ControlKey(int16(kmsg.OffsetCommit), func(kmsg.Request) (kmsg.Response, error, bool) {
					w.cluster.KeepControl()
					if k := n.Add(1); k%3 == 1 && k < 15 {
						return nil, errors.New("injected commit failure"), true
					}
					return nil, nil, false
				})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, 3)
			w.watchCommits() // first, so that it sees every commit
			tt.inject(w)
			cfg := w.config()
			cfg.FlushRows = 30
			r := w.start("a", cfg)
			for range 5 {
				w.produce("m", 100, nil)
				time.Sleep(50 * time.Millisecond)
			}
			w.waitCaughtUp()
			r.stop(t)
			w.check(w.allProduced())
		})
	}
}

// TestClaimRetried makes Claim fail a few times: the assignment waits for
// Postgres, readiness says why, and loading then proceeds.
func TestClaimRetried(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 2)
	w.watchCommits()
	var n atomic.Int32
	w.sink.claimErr = func() error {
		if n.Add(1) <= 2 {
			return errDown
		}
		return nil
	}
	w.produce("m", 50, nil)
	r := w.start("a", w.config())
	w.waitCaughtUp()
	r.stop(t)
	w.check(w.allProduced())
	if st := r.c.Stats(); st.Retries < 2 {
		t.Errorf("stats retries %d, want ≥ 2", st.Retries)
	}
}

// TestShutdownWhileSinkDown stops a consumer whose sink keeps failing: Run
// gives up after SHUTDOWN_TIMEOUT and returns nil without committing, and
// the next consumer loads everything once.
func TestShutdownWhileSinkDown(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 2)
	w.watchCommits()
	var attempts atomic.Int32
	w.sink.setHook(func(context.Context, *schema.Batch) error {
		attempts.Add(1)
		return errDown
	})
	cfg := w.config()
	cfg.ShutdownTimeout = 300 * time.Millisecond
	w.produce("m", 100, nil)
	a := w.start("a", cfg)
	kafkatest.Eventually(t, 30*time.Second, "load attempts failing", func() (bool, string) {
		return attempts.Load() >= 2, fmt.Sprint(attempts.Load(), " attempts")
	})
	if err := a.c.Ready(); err == nil || !strings.Contains(err.Error(), "sink failing") {
		t.Errorf("Ready while the sink is down = %v", err)
	}
	a.stop(t) // fails the test if Run returns an error or hangs
	if n := w.sink.loadedCount(); n != 0 {
		t.Fatalf("%d records loaded by a failing sink", n)
	}

	w.sink.setHook(nil)
	b := w.start("b", w.config())
	w.waitCaughtUp()
	b.stop(t)
	w.check(w.allProduced())
}

// TestReadyStuckFlush holds one flush in the sink past FLUSH_STUCK_AFTER:
// Ready says so, and is nil again once the flush lands.
func TestReadyStuckFlush(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 1)
	release := make(chan struct{})
	var once sync.Once
	w.sink.setHook(func(ctx context.Context, b *schema.Batch) error {
		once.Do(func() { <-release })
		return nil
	})
	cfg := w.config()
	cfg.FlushStuckAfter = 100 * time.Millisecond
	r := w.start("a", cfg)
	w.produce("m", 10, nil)
	kafkatest.Eventually(t, 30*time.Second, "Ready reporting the stuck flush", func() (bool, string) {
		err := r.c.Ready()
		return err != nil && strings.Contains(err.Error(), "SEGWH_FLUSH_STUCK_AFTER"), fmt.Sprint(err)
	})
	close(release)
	w.waitCaughtUp()
	kafkatest.Eventually(t, 10*time.Second, "ready after the flush landed", func() (bool, string) {
		err := r.c.Ready()
		return err == nil, fmt.Sprint(err)
	})
	r.stop(t)
	w.check(w.allProduced())
}

// holdCommit holds the client's first OffsetCommit response until
// release is closed, as a slow group coordinator would (its read hook runs
// before the response is delivered).
type holdCommit struct {
	held    atomic.Bool
	release chan struct{}
}

func (h *holdCommit) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == int16(kmsg.OffsetCommit) && err == nil && h.held.CompareAndSwap(false, true) {
		<-h.release
	}
}

// TestSlowKafkaCommit holds the group's first OffsetCommit: flushes must go
// on landing meanwhile, since Kafka's offsets only serve lag tools. (When
// the next flight waited for the previous one's commit, nothing more
// loaded until the commit came back.) Once it is let go, everything loads
// exactly once and Kafka catches up with Postgres.
func TestSlowKafkaCommit(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 2)
	w.watchCommits()
	hold := &holdCommit{release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(hold.release) }) }
	cfg := w.config()
	cfg.FlushRows = 20
	// The held commit shares its connection with the heartbeats.
	cfg.SessionTimeout = 20 * time.Second
	cfg.RebalanceTimeout = 20 * time.Second
	w.produce("m", 40, nil)
	r := w.start("a", cfg, consumer.WithKgoOpts(kgo.WithHooks(hold)))
	t.Cleanup(release) // before the runner's stop, should the test fail early
	kafkatest.Eventually(t, 30*time.Second, "the first commit held", func() (bool, string) { return hold.held.Load(), "" })
	before := w.sink.loadedCount()
	w.produce("m", 200, nil)
	// Liveness, not speed: with the commit held, these loads happen or
	// never do.
	kafkatest.Eventually(t, 10*time.Second, "flushes landing while the commit is held", func() (bool, string) {
		got := w.sink.loadedCount()
		return got >= before+100, fmt.Sprintf("%d loaded before the hold's produce, %d now", before, got)
	})
	release()
	w.waitCaughtUp()
	kafkatest.Eventually(t, 30*time.Second, "Kafka's commits at Postgres's offsets", func() (bool, string) {
		c := kafkatest.CommittedOffsets(t, w.addrs, w.group, w.topic)
		s := w.sink.storedOf(w.topic)
		for p, off := range s {
			if c[p] != off {
				return false, fmt.Sprintf("Kafka %v, Postgres %v", c, s)
			}
		}
		return true, ""
	})
	r.stop(t)
	w.check(w.allProduced())
}
