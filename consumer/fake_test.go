package consumer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/segwarehouse/segwarehouse/consumer"
	"github.com/segwarehouse/segwarehouse/internal/kafkatest"
	"github.com/segwarehouse/segwarehouse/schema"
)

// testDecoder turns {"id":"m1"} into one row of <source>.events, where the
// source is the record's source header or "src"; anything else is
// rejected, as the real decoder rejects bad JSON.
type testDecoder struct{}

func (testDecoder) Decode(rec *schema.Record) *schema.Decoded {
	d := &schema.Decoded{Pos: rec.Pos(), Bytes: len(rec.Value)}
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(rec.Value, &v); err != nil || v.ID == "" {
		d.Rejected = []schema.Rejected{{Pos: rec.Pos(), Timestamp: rec.Timestamp, Raw: rec.Value, Reason: "not a message"}}
		return d
	}
	src := "src"
	if rec.SourceHeader != "" {
		src = rec.SourceHeader
	}
	d.Messages = 1
	d.Rows = []schema.TableRow{{
		Table: schema.TableRef{Schema: src, Table: "events"},
		Row: schema.Row{
			ID:         v.ID,
			ReceivedAt: rec.Timestamp,
			Pos:        rec.Pos(),
			Cols:       []schema.Col{{Name: "id", Val: schema.Value{Kind: schema.KindString, Str: v.ID}}},
		},
	}}
	return d
}

// Errors of the fake sink, classified as the real sink's are.
type (
	fencedErr struct{ msg string }
	poisonErr struct{ msg string }
)

func (e fencedErr) Error() string { return e.msg }
func (fencedErr) Fenced() bool    { return true }
func (e poisonErr) Error() string { return e.msg }
func (poisonErr) Poison() bool    { return true }

var errDown = errors.New("connection refused (fake postgres down)")

type tpk struct {
	topic     string
	partition int32
}

// loadedBatch is what the fake sink keeps of each successful Load.
type loadedBatch struct {
	owner   string
	records int
	rows    int
	bytes   int
}

// fakeSink behaves like the Postgres sink: Claim takes ownership, Load
// checks the fence (owner and From of every partition) and applies rows and
// offsets atomically. Rows whose id starts with "poison" make Load fail as
// poison, as a value Postgres refuses would. hook, if set, runs first,
// outside the lock, and may block or fail the call.
type fakeSink struct {
	mu       sync.Mutex
	owner    map[tpk]string
	stored   map[tpk]int64
	ids      map[string]int    // row id → times loaded
	seq      map[tpk][]int64   // offsets loaded (rows and rejected), in load order
	rejected []schema.Rejected // loaded rejections
	batches  []loadedBatch     // successful loads
	tables   map[string]int    // rows per table
	fenced   int               // loads refused by the fence
	commits  int               // OffsetCommit requests seen by checkCommit
	errs     []string          // invariant violations seen inside the sink
	hook     func(context.Context, *schema.Batch) error
	claimErr func() error
	prepared int // Prepare calls
	usedPrep int // successful Loads of a prepared batch
}

// prepMark is what the fake's Prepare leaves on a batch: its shape when
// prepared, which Load checks.
type prepMark struct {
	records int
	offsets []schema.OffsetAdvance
}

// Prepare marks the batch, as the real sink leaves its picture on it.
func (s *fakeSink) Prepare(ctx context.Context, b *schema.Batch) error {
	s.mu.Lock()
	s.prepared++
	s.mu.Unlock()
	b.Prepared = &prepMark{records: b.Records, offsets: slices.Clone(b.Offsets)}
	return nil
}

func newFakeSink() *fakeSink {
	return &fakeSink{
		owner:  make(map[tpk]string),
		stored: make(map[tpk]int64),
		ids:    make(map[string]int),
		seq:    make(map[tpk][]int64),
		tables: make(map[string]int),
	}
}

func (s *fakeSink) setHook(h func(context.Context, *schema.Batch) error) {
	s.mu.Lock()
	s.hook = h
	s.mu.Unlock()
}

func (s *fakeSink) Claim(ctx context.Context, group, owner string, parts map[string][]int32) (map[string]map[int32]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.claimErr != nil {
		if err := s.claimErr(); err != nil {
			return nil, err
		}
	}
	out := make(map[string]map[int32]int64)
	for t, ps := range parts {
		for _, p := range ps {
			k := tpk{t, p}
			s.owner[k] = owner
			if off, ok := s.stored[k]; ok {
				if out[t] == nil {
					out[t] = make(map[int32]int64)
				}
				out[t][p] = off
			}
		}
	}
	return out, nil
}

func (s *fakeSink) Load(ctx context.Context, b *schema.Batch) error {
	s.mu.Lock()
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, b); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := b.Prepared.(*prepMark); ok && (m.records != b.Records || !slices.Equal(m.offsets, b.Offsets)) {
		s.errs = append(s.errs, fmt.Sprintf("a prepared batch changed before its Load: %d records %v, now %d records %v", m.records, m.offsets, b.Records, b.Offsets))
	}
	// The data first, as COPY would.
	for _, t := range b.Tables {
		for _, r := range t.Rows {
			if strings.HasPrefix(r.ID, "poison") {
				return poisonErr{fmt.Sprintf("invalid input syntax for type numeric: %q", r.ID)}
			}
		}
	}
	// The fenced offsets update.
	for _, o := range b.Offsets {
		k := tpk{o.Topic, o.Partition}
		if s.owner[k] != b.Owner {
			s.fenced++
			return fencedErr{fmt.Sprintf("%s/%d is owned by %q, not %q", o.Topic, o.Partition, s.owner[k], b.Owner)}
		}
		cur, ok := s.stored[k]
		if !ok {
			cur = -1
		}
		if cur != o.From {
			s.fenced++
			return fencedErr{fmt.Sprintf("%s/%d holds %d, batch expects %d", o.Topic, o.Partition, cur, o.From)}
		}
	}
	// Check the batch itself: every record inside (From, To), To is right
	// after the last one.
	offs := make(map[tpk][]int64)
	rows := 0
	for _, t := range b.Tables {
		for _, r := range t.Rows {
			k := tpk{r.Pos.Topic, r.Pos.Partition}
			offs[k] = append(offs[k], r.Pos.Offset)
			rows++
		}
	}
	for _, r := range b.Rejected {
		k := tpk{r.Pos.Topic, r.Pos.Partition}
		offs[k] = append(offs[k], r.Pos.Offset)
	}
	for _, o := range b.Offsets {
		k := tpk{o.Topic, o.Partition}
		os := offs[k]
		slices.Sort(os)
		if len(os) == 0 || os[0] < o.From || os[len(os)-1] != o.To-1 {
			s.errs = append(s.errs, fmt.Sprintf("batch %s/%d from %d to %d holds offsets %v", o.Topic, o.Partition, o.From, o.To, os))
		}
	}
	// Apply.
	for _, t := range b.Tables {
		for _, r := range t.Rows {
			s.ids[r.ID]++
		}
		s.tables[t.Table.String()] += len(t.Rows)
	}
	s.rejected = append(s.rejected, b.Rejected...)
	for _, o := range b.Offsets {
		k := tpk{o.Topic, o.Partition}
		s.seq[k] = append(s.seq[k], offs[k]...)
		s.stored[k] = o.To
	}
	s.batches = append(s.batches, loadedBatch{owner: b.Owner, records: b.Records, rows: rows, bytes: b.Bytes})
	if b.Prepared != nil {
		s.usedPrep++
	}
	return nil
}

// checkCommit is an observing kfake control on OffsetCommit: at the moment
// the broker receives a commit of group, no offset in it may be ahead of
// what the sink stores.
func (s *fakeSink) checkCommit(group string, names map[[16]byte]string, req *kmsg.OffsetCommitRequest) {
	if req.Group != group {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commits++
	for _, t := range req.Topics {
		name := t.Topic
		if name == "" {
			name = names[t.TopicID]
		}
		for _, p := range t.Partitions {
			k := tpk{name, p.Partition}
			if stored, ok := s.stored[k]; !ok || p.Offset > stored {
				s.errs = append(s.errs, fmt.Sprintf("Kafka commit of %s/%d at %d is ahead of Postgres's %d (stored: %v)", name, p.Partition, p.Offset, stored, ok))
			}
		}
	}
}

func (s *fakeSink) storedOf(topic string) map[int32]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int32]int64)
	for k, v := range s.stored {
		if k.topic == topic {
			out[k.partition] = v
		}
	}
	return out
}

// loadedCount is the number of records (rows and rejections) loaded.
func (s *fakeSink) loadedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.seq {
		n += len(v)
	}
	return n
}

func (s *fakeSink) fencedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fenced
}

func (s *fakeSink) ownerOf(topic string, p int32) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owner[tpk{topic, p}]
}

// produced is one record the test wrote; id is "" for a record the decoder
// rejects.
type produced struct {
	offset int64
	id     string
	value  []byte
}

// world is one test's cluster, topic, fake sink and what was produced.
type world struct {
	t       *testing.T
	cluster *kfake.Cluster
	addrs   []string
	topic   string
	group   string
	parts   int32
	sink    *fakeSink
	prod    *kgo.Client
	log     *slog.Logger
	watched bool // watchCommits was called

	mu       sync.Mutex
	produced map[int32][]produced
	n        int
}

func newWorld(t *testing.T, partitions int32) *world {
	t.Helper()
	w := &world{
		t:        t,
		topic:    "events",
		group:    "segwh",
		parts:    partitions,
		sink:     newFakeSink(),
		produced: make(map[int32][]produced),
	}
	w.cluster = kafkatest.Start(t, map[string]int32{w.topic: partitions})
	w.addrs = w.cluster.ListenAddrs()
	w.prod = kafkatest.Producer(t, w.addrs)
	w.log = testLogger(t)
	return w
}

// watchCommits installs the commit observer (after any admin commit the
// test makes on purpose).
func (w *world) watchCommits() {
	w.t.Helper()
	names := kafkatest.TopicNames(w.t, w.addrs)
	w.watched = true
	w.cluster.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		w.sink.checkCommit(w.group, names, kreq.(*kmsg.OffsetCommitRequest))
		return nil, nil, false
	})
}

// produce writes n records round-robin over the partitions, ids
// "<prefix>-<i>"; mk, if set, builds the value (and may return a bad one).
func (w *world) produce(prefix string, n int, mk func(i int, r *kgo.Record)) []*kgo.Record {
	w.t.Helper()
	recs := make([]*kgo.Record, n)
	w.mu.Lock()
	base := w.n
	w.n += n
	w.mu.Unlock()
	for i := range recs {
		id := fmt.Sprintf("%s-%d", prefix, base+i)
		r := &kgo.Record{Partition: int32((base + i) % int(w.parts)), Value: []byte(`{"id":"` + id + `"}`)}
		if mk != nil {
			mk(base+i, r)
		}
		recs[i] = r
	}
	kafkatest.ProduceWith(w.t, w.prod, w.topic, recs...)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range recs {
		var v struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(r.Value, &v)
		w.produced[r.Partition] = append(w.produced[r.Partition], produced{offset: r.Offset, id: v.ID, value: r.Value})
	}
	for p := range w.produced {
		slices.SortFunc(w.produced[p], func(a, b produced) int { return int(a.offset - b.offset) })
	}
	return recs
}

func (w *world) allProduced() map[int32][]produced {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[int32][]produced, len(w.produced))
	for p, v := range w.produced {
		out[p] = slices.Clone(v)
	}
	return out
}

// config is a consumer configuration with short timeouts for tests.
func (w *world) config() consumer.Config {
	return consumer.Config{
		Brokers:          w.addrs,
		Topics:           []string{w.topic},
		Group:            w.group,
		ClientID:         "test",
		SessionTimeout:   2 * time.Second,
		RebalanceTimeout: 3 * time.Second,
		StartFrom:        "earliest",
		FlushRows:        200,
		FlushBytes:       1 << 20,
		FlushInterval:    20 * time.Millisecond,
		Workers:          2,
		PollRecords:      100,
		ShutdownTimeout:  10 * time.Second,
		FlushStuckAfter:  time.Minute,
	}
}

// runner is one running Consumer; stop cancels it and waits for Run.
type runner struct {
	name   string
	c      *consumer.Consumer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// start runs a consumer until stop (or the test's end).
func (w *world) start(name string, cfg consumer.Config, opts ...consumer.Option) *runner {
	w.t.Helper()
	opts = append([]consumer.Option{consumer.WithKgoOpts(
		kgo.HeartbeatInterval(100*time.Millisecond),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
	)}, opts...)
	c, err := consumer.New(cfg, testDecoder{}, w.sink, w.log.With("consumer", name), opts...)
	if err != nil {
		w.t.Fatalf("consumer.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{name: name, c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	w.t.Cleanup(func() { r.stop(w.t) })
	return r
}

func (r *runner) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(30 * time.Second):
			r.err = errors.New("Run did not return within 30s of cancel")
		}
		if r.err != nil {
			t.Errorf("consumer %s: Run: %v", r.name, r.err)
		}
	})
}

// onceSinkSees runs act, from the sink's hook, on the first batch that
// holds a row with id, before the sink loads it. The returned func gives
// act's error, or an error when no batch held the row.
func (w *world) onceSinkSees(id string, act func(context.Context, schema.Row) error) func() error {
	var done atomic.Bool
	var actErr atomic.Pointer[error]
	w.sink.setHook(func(ctx context.Context, b *schema.Batch) error {
		if done.Load() {
			return nil
		}
		for _, tr := range b.Tables {
			for _, r := range tr.Rows {
				if r.ID == id {
					if err := act(ctx, r); err != nil {
						actErr.Store(&err)
					}
					done.Store(true)
					return nil
				}
			}
		}
		return nil
	})
	return func() error {
		if !done.Load() {
			return fmt.Errorf("the sink never saw a row with id %q", id)
		}
		if err := actErr.Load(); err != nil {
			return *err
		}
		return nil
	}
}

// waitLoaded waits until the sink holds n records.
func (w *world) waitLoaded(n int) {
	w.t.Helper()
	kafkatest.Eventually(w.t, 30*time.Second, fmt.Sprintf("%d records loaded", n), func() (bool, string) {
		got := w.sink.loadedCount()
		return got >= n, fmt.Sprintf("%d loaded", got)
	})
}

// waitCaughtUp waits until the sink stores every partition's end offset.
func (w *world) waitCaughtUp() {
	w.t.Helper()
	kafkatest.Eventually(w.t, 30*time.Second, "Postgres offsets at the end of every partition", func() (bool, string) {
		end := kafkatest.EndOffsets(w.t, w.addrs, w.topic)
		stored := w.sink.storedOf(w.topic)
		for p, e := range end {
			if e > 0 && stored[p] != e {
				return false, fmt.Sprintf("end %v, stored %v", end, stored)
			}
		}
		return true, ""
	})
}

// check asserts the exactly-once invariants once every consumer stopped:
// each partition's loaded offsets are exactly want's, in order; every id
// was loaded once; rows equal distinct ids; Postgres's offsets are the end
// offsets; Kafka's committed offsets equal Postgres's; and no commit was
// ever ahead of Postgres.
func (w *world) check(want map[int32][]produced) {
	w.t.Helper()
	end := kafkatest.EndOffsets(w.t, w.addrs, w.topic)
	committed := kafkatest.CommittedOffsets(w.t, w.addrs, w.group, w.topic)
	s := w.sink
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.errs {
		w.t.Error(e)
	}
	if len(s.stored) > 0 && w.watched && s.commits == 0 {
		w.t.Error("the commit observer saw no OffsetCommit")
	}
	wantIDs := make(map[string]bool)
	for p := range w.parts {
		k := tpk{w.topic, p}
		var offs []int64
		for _, pr := range want[p] {
			offs = append(offs, pr.offset)
			if pr.id != "" && !strings.HasPrefix(pr.id, "poison") {
				wantIDs[pr.id] = true
			}
		}
		if !slices.Equal(s.seq[k], offs) {
			w.t.Errorf("partition %d: loaded offsets %s, want %s", p, short(s.seq[k]), short(offs))
		}
		if len(want[p]) > 0 && s.stored[k] != end[p] {
			w.t.Errorf("partition %d: Postgres holds %d, end offset is %d", p, s.stored[k], end[p])
		}
		if st, ok := s.stored[k]; ok && committed[p] != st {
			w.t.Errorf("partition %d: Kafka committed %d, Postgres holds %d", p, committed[p], st)
		}
	}
	rows := 0
	for _, n := range s.tables {
		rows += n
	}
	for id, n := range s.ids {
		if n != 1 {
			w.t.Errorf("id %s loaded %d times", id, n)
		}
		if !wantIDs[id] {
			w.t.Errorf("id %s loaded but not expected", id)
		}
	}
	if len(s.ids) != len(wantIDs) || rows != len(wantIDs) {
		w.t.Errorf("rows %d, distinct ids loaded %d, want %d", rows, len(s.ids), len(wantIDs))
	}
}

func short(v []int64) string {
	if len(v) <= 12 {
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("%v...%v (%d)", v[:6], v[len(v)-6:], len(v))
}

// testLogger collects the consumers' logs and prints them if the test
// fails (or with -v and SEGWH_TEST_LOG=1).
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	var mu sync.Mutex
	var buf bytes.Buffer
	var closed atomic.Bool
	w := writerFunc(func(p []byte) (int, error) {
		if closed.Load() {
			return len(p), nil
		}
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})
	t.Cleanup(func() {
		closed.Store(true)
		mu.Lock()
		defer mu.Unlock()
		if t.Failed() || (testing.Verbose() && envLog) {
			t.Logf("consumer logs:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
