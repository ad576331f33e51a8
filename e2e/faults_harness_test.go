package e2e

// The machinery of the fault tests (fault_test.go): a workload that knows
// what it produced, a fleet of loader processes, a Kafka commit watcher,
// a readiness poller, and assertExactlyOnce, the one checker every fault
// test ends with.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
	"github.com/segwarehouse/segwarehouse/internal/sample"
	"github.com/segwarehouse/segwarehouse/internal/testlog"
)

// faultGroup is the consumer group of every fault test (loaderEnv's).
const faultGroup = "e2e"

// faultSessionTimeout is the loaders' group session timeout in the fault
// tests: a SIGKILLed or SIGSTOPped member holds its partitions this long.
// kfake's default minimum is 6s; newFaultBroker lowers it.
const faultSessionTimeout = 3 * time.Second

// envInt reads a test-size knob, e.g. SEGWH_E2E_CRASH_EVENTS=200000 to run
// the crash test at the full size.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// testSeed is the seed of a test's random choices (kill moments, victims,
// faults): $SEGWH_E2E_SEED or a fresh one, logged so that a failure can be
// replayed.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("SEGWH_E2E_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (rerun with SEGWH_E2E_SEED=%d)", seed, seed)
	return seed
}

// newFaultBroker is newBroker with a group minimum session timeout of 1s,
// so that the loaders can use faultSessionTimeout.
func newFaultBroker(t *testing.T, partitions int32, topics ...string) *broker {
	t.Helper()
	c, err := kfake.NewCluster(kfake.Ports(0), kfake.SeedTopics(partitions, topics...), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &broker{c: c, addrs: c.ListenAddrs()}
}

// faultEnv is loaderEnv with a short session timeout, small flushes (so
// that a fault is likely to land inside one), a progress line every second
// and the HTTP server on a free port.
func faultEnv(b *broker, dsn, topic string) map[string]string {
	env := loaderEnv(b, dsn, topic)
	env["SEGWH_KAFKA_SESSION_TIMEOUT"] = faultSessionTimeout.String()
	env["SEGWH_KAFKA_REBALANCE_TIMEOUT"] = "8s"
	env["SEGWH_FLUSH_ROWS"] = "2000"
	env["SEGWH_FLUSH_INTERVAL"] = "200ms"
	env["SEGWH_PROGRESS_EVERY"] = "1s"
	env["SEGWH_SHUTDOWN_TIMEOUT"] = "15s"
	return env
}

// ---------------------------------------------------------------------------
// The workload: realistic Segment messages (internal/sample), batch
// envelopes, producer duplicates and bad records, with everything the
// checker needs to know about them.

// msgKey orders the calls that merge into one users/accounts row (SPEC
// §11): the later received_at wins, ties go to the greater messageId.
type msgKey struct {
	at time.Time
	id string
}

func (k msgKey) after(o msgKey) bool {
	if !k.at.Equal(o.at) {
		return k.at.After(o.at)
	}
	return k.id > o.id
}

// recPos is a record's position, as _segwarehouse.rejected keys it.
type recPos struct {
	topic     string
	partition int32
	offset    int64
}

func (p recPos) String() string { return fmt.Sprintf("%s/%d@%d", p.topic, p.partition, p.offset) }

// tableOf maps a call type to its table.
var tableOf = map[string]string{"track": "tracks", "page": "pages", "identify": "identifies", "group": "groups", "screen": "screens", "alias": "aliases"}

type workload struct {
	topic string
	gen   *sample.Generator
	rng   *rand.Rand
	base  time.Time // Kafka timestamp of the first record

	mu       sync.Mutex
	seq      int                        // records generated
	ids      map[string]map[string]bool // table → message ids
	users    map[string]msgKey          // userId → the identify that wins the row
	accounts map[string]msgKey          // groupId → the group call that wins the row
	bad      map[recPos]string          // bad records produced → kind
	recent   []*kgo.Record              // good records, for late duplicates
	n        struct{ records, messages, dups, envelopes, bad int }
}

func newWorkload(topic string, seed uint64) *workload {
	return &workload{
		topic:    topic,
		gen:      sample.New(seed, 25, 400, sample.DefaultMix),
		rng:      rand.New(rand.NewPCG(seed, 7)),
		base:     time.UnixMilli(time.Now().UnixMilli()),
		ids:      make(map[string]map[string]bool),
		users:    make(map[string]msgKey),
		accounts: make(map[string]msgKey),
		bad:      make(map[recPos]string),
	}
}

// noteLocked records one message that must load, received at `at` (the
// record's Kafka timestamp: the messages carry no receivedAt).
func (w *workload) noteLocked(m map[string]any, at time.Time) {
	typ := m["type"].(string)
	id := m["messageId"].(string)
	table := tableOf[typ]
	if w.ids[table] == nil {
		w.ids[table] = make(map[string]bool)
	}
	w.ids[table][id] = true
	w.n.messages++
	k := msgKey{at, id}
	switch typ {
	case "identify":
		if u, ok := m["userId"].(string); ok && u != "" {
			if old, ok := w.users[u]; !ok || k.after(old) {
				w.users[u] = k
			}
		}
	case "group":
		g := m["groupId"].(string)
		if old, ok := w.accounts[g]; !ok || k.after(old) {
			w.accounts[g] = k
		}
	}
}

// badKinds are the bad records the workload mixes in: every one must end in
// _segwarehouse.rejected, and nothing else may.
var badKinds = []string{"truncated json", "unknown type", "track without event", "not an object", "tombstone", "empty value", "bad message in a batch"}

// next generates n records plus the producer duplicates that come with
// them. kinds[i] names the bad kind of recs[i], "" for a good record.
func (w *workload) next(n int) (recs []*kgo.Record, kinds []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for range n {
		w.seq++
		// A few records share each millisecond, so that merge ties happen.
		at := w.base.Add(time.Duration(w.seq/3) * time.Millisecond)
		m := w.gen.NextMap()
		key, _ := m["userId"].(string)
		var v []byte
		kind := ""
		switch {
		case w.seq%250 == 0:
			kind = badKinds[(w.seq/250)%len(badKinds)]
			id := fmt.Sprintf("bad-%s-%d", w.topic, w.seq)
			switch kind {
			case "truncated json":
				v = []byte(`{"type":"track","messageId":"` + id + `","event":"Order`)
			case "unknown type":
				v = []byte(`{"type":"purchase","messageId":"` + id + `","userId":"u1"}`)
			case "track without event":
				v = []byte(`{"type":"track","messageId":"` + id + `","userId":"u1"}`)
			case "not an object":
				v = []byte(`["` + id + `"]`)
			case "tombstone":
				v = nil
			case "empty value":
				v = []byte{}
			case "bad message in a batch":
				// The good message loads, the one without any id is rejected.
				w.noteLocked(m, at)
				v, _ = json.Marshal(map[string]any{"batch": []any{m, map[string]any{"type": "identify", "messageId": id, "traits": map[string]any{"plan": "x"}}}})
			}
		case w.seq%40 == 0:
			m2 := w.gen.NextMap()
			w.noteLocked(m, at)
			w.noteLocked(m2, at)
			w.n.envelopes++
			v, _ = json.Marshal(map[string]any{"batch": []any{m, m2}, "sentAt": at.UTC().Format(time.RFC3339Nano)})
		default:
			w.noteLocked(m, at)
			v, _ = json.Marshal(m)
		}
		r := &kgo.Record{Topic: w.topic, Key: []byte(key), Value: v, Timestamp: at}
		recs = append(recs, r)
		kinds = append(kinds, kind)
		w.n.records++
		if kind != "" {
			continue
		}
		if len(w.recent) < 500 {
			w.recent = append(w.recent, r)
		} else {
			w.recent[w.rng.IntN(len(w.recent))] = r
		}
		// Producer duplicates: the same record again at once (a retried
		// produce), or one sent a while ago (a client that resent it).
		switch d := w.rng.IntN(100); {
		case d == 0:
			recs = append(recs, dupRecord(r))
			kinds = append(kinds, "")
			w.n.dups++
			w.n.records++
		case d == 1 && len(w.recent) > 100:
			recs = append(recs, dupRecord(w.recent[w.rng.IntN(len(w.recent))]))
			kinds = append(kinds, "")
			w.n.dups++
			w.n.records++
		}
	}
	return recs, kinds
}

func dupRecord(r *kgo.Record) *kgo.Record {
	return &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}
}

// produce generates n records and produces them with cl, remembering where
// the bad ones landed.
func (w *workload) produce(ctx context.Context, cl *kgo.Client, n int) error {
	recs, kinds := w.next(n)
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("producing %d records: %w", len(recs), err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, r := range recs {
		if kinds[i] != "" {
			w.bad[recPos{r.Topic, r.Partition, r.Offset}] = kinds[i]
			w.n.bad++
		}
	}
	return nil
}

// probe produces one track of a new event to each partition (a manual
// partitioner), for tests that need every loader's next flush to create a
// table.
func (w *workload) probe(t *testing.T, b *broker, event string, partitions int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	w.mu.Lock()
	for p := range partitions {
		w.seq++
		at := w.base.Add(time.Duration(w.seq/3) * time.Millisecond)
		m := map[string]any{"type": "track", "event": event, "messageId": fmt.Sprintf("probe-%s-%d", event, w.seq),
			"userId": "prober", "properties": map[string]any{"partition": p}}
		w.noteLocked(m, at)
		w.n.records++
		v, _ := json.Marshal(m)
		recs = append(recs, &kgo.Record{Topic: w.topic, Partition: p, Value: v, Timestamp: at})
	}
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing probes: %v", err)
	}
}

// stream produces total records at about rate records per second in the
// background. The returned channel yields the producer's error (nil when
// all were produced) and is then closed.
func (w *workload) stream(t *testing.T, b *broker, total, rate int) <-chan error {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addrs...), kgo.ProducerBatchMaxBytes(4<<20), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		cl.Close()
	})
	chunk := max(rate/10, 50)
	go func() {
		defer wg.Done()
		defer close(done)
		start := time.Now()
		for sent := 0; sent < total; {
			n := min(chunk, total-sent)
			if err := w.produce(ctx, cl, n); err != nil {
				done <- err
				return
			}
			sent += n
			// Pace: sent records are due at start + sent/rate.
			due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
			select {
			case <-ctx.Done():
				done <- ctx.Err()
				return
			case <-time.After(time.Until(due)):
			}
		}
		done <- nil
	}()
	return done
}

// waitStream waits for a stream to finish.
func waitStream(t *testing.T, done <-chan error, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("producer: %v", err)
		}
	case <-time.After(timeout):
		t.Fatalf("producer did not finish within %s", timeout)
	}
}

func (w *workload) figures() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("%d records (%d messages, %d batch envelopes, %d producer duplicates, %d bad records), %d users, %d accounts",
		w.n.records, w.n.messages, w.n.envelopes, w.n.dups, w.n.bad, len(w.users), len(w.accounts))
}

// ---------------------------------------------------------------------------
// A fleet of loader processes.

type fleet struct {
	t   *testing.T
	env map[string]string

	mu     sync.Mutex
	all    []*loader            // every process started, in order
	names  map[*loader]string   // its Kafka client id
	deaths map[string]time.Time // client id → when it was SIGKILLed
	reaped []string             // ghost members removed (reapGhosts)
}

func newFleet(t *testing.T, env map[string]string) *fleet {
	f := &fleet{t: t, env: env, names: make(map[*loader]string), deaths: make(map[string]time.Time)}
	// Registered before any process: runs after their cleanups stopped
	// them (cleanups run last-in first-out).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, l := range f.all {
			// Log lines only: no progress lines, no stray debug prints.
			var logLines []string
			for _, ln := range strings.Split(l.out.String(), "\n") {
				if strings.HasPrefix(ln, "time=") || strings.HasPrefix(ln, "{") || strings.Contains(ln, "panic") || strings.HasPrefix(ln, "segwarehouse:") {
					logLines = append(logLines, ln)
				}
			}
			if i >= len(f.all)-3 {
				t.Logf("loader %d log (tail):\n%s", i, tail(strings.Join(logLines, "\n"), 40))
				continue
			}
			var keep []string
			for _, ln := range logLines {
				if strings.Contains(ln, "level=WARN") || strings.Contains(ln, "level=ERROR") || strings.Contains(ln, "fenced") || strings.Contains(ln, "panic") {
					keep = append(keep, ln)
				}
			}
			if len(keep) > 0 {
				t.Logf("loader %d warnings:\n%s", i, tail(strings.Join(keep, "\n"), 10))
			}
		}
	})
	return f
}

// start runs one more loader with the fleet's environment plus extra.
func (f *fleet) start(extra map[string]string) *loader {
	f.t.Helper()
	env := make(map[string]string, len(f.env)+len(extra)+1)
	for k, v := range f.env {
		env[k] = v
	}
	f.mu.Lock()
	env["SEGWH_KAFKA_CLIENT_ID"] = fmt.Sprintf("loader-%d", len(f.all)+1) // tells group members apart
	f.mu.Unlock()
	for k, v := range extra {
		env[k] = v
	}
	cmd := newLoaderCmd(env)
	l := &loader{cmd: cmd, out: &testlog.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = l.out, l.out
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	go func() { l.done <- cmd.Wait() }()
	f.t.Cleanup(func() {
		if !l.exited() {
			_ = cmd.Process.Signal(syscall.SIGCONT) // in case a test left it stopped
			_ = l.stop(f.t, 30*time.Second)
		}
	})
	f.mu.Lock()
	f.all = append(f.all, l)
	f.names[l] = env["SEGWH_KAFKA_CLIENT_ID"]
	f.mu.Unlock()
	return l
}

// kill SIGKILLs l and remembers when, for reapGhosts.
func (f *fleet) kill(l *loader) {
	l.kill()
	f.mu.Lock()
	f.deaths[f.names[l]] = time.Now()
	f.mu.Unlock()
}

// reapGhosts works around a kfake bug until the test ends. kfake arms a
// member's session timer only when its JoinGroup answer is delivered
// (group.reply), so a loader SIGKILLed while its JoinGroup waits for a
// rebalance stays in the group with an assignment and no session timer,
// once the leader has synced (which also stops the pending-sync timer).
// Its partitions then stall until some later rebalance, which a real
// broker would have started after the session timeout. Every second,
// reapGhosts removes (LeaveGroup, which is what kfake's own session
// expiry does) each member whose process was SIGKILLed longer ago than
// kfake could ever need to expire it: session timeout + rebalance
// timeout + 2s. The loaders are not involved: this only does the broker's
// job.
func (f *fleet) reapGhosts(t *testing.T, b *broker, rebalanceTimeout time.Duration) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addrs...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	t.Cleanup(func() { cancel(); wg.Wait(); cl.Close() })
	grace := faultSessionTimeout + rebalanceTimeout + 2*time.Second
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
			groups, err := adm.DescribeGroups(dctx, faultGroup)
			dcancel()
			if err != nil {
				continue
			}
			for _, g := range groups {
				for _, m := range g.Members {
					f.mu.Lock()
					died, dead := f.deaths[m.ClientID]
					f.mu.Unlock()
					if !dead || time.Since(died) < grace {
						continue
					}
					req := kmsg.NewPtrLeaveGroupRequest()
					req.Group = faultGroup
					lm := kmsg.NewLeaveGroupRequestMember()
					lm.MemberID = m.MemberID
					req.Members = append(req.Members, lm)
					lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
					_, err := req.RequestWith(lctx, cl)
					lcancel()
					if err == nil {
						f.mu.Lock()
						f.reaped = append(f.reaped, fmt.Sprintf("%s (dead %s, state %s)", m.ClientID, time.Since(died).Round(time.Second), g.State))
						f.mu.Unlock()
					}
				}
			}
		}
	}()
}

// count counts lines containing s in every process's output.
func (f *fleet) count(s string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, l := range f.all {
		n += strings.Count(l.out.String(), s)
	}
	return n
}

func (f *fleet) processes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.all)
}

// figures summarises what the loaders' logs say happened.
func (f *fleet) figures() string {
	f.mu.Lock()
	reaped := ""
	if len(f.reaped) > 0 {
		reaped = fmt.Sprintf("; kfake ghost members removed: %v", f.reaped)
	}
	f.mu.Unlock()
	return fmt.Sprintf("%d loader processes; log lines: %d partition assignments, %d revoked, %d lost, %d fenced flushes, %d failed flushes retried, %d failed claims retried, %d failed Kafka commits%s",
		f.processes(), f.count("partition assigned"), f.count("msg=\"partition revoked"), f.count("msg=\"partition lost"),
		f.fenced(), f.count("flush failed; retrying"), f.count("claiming partitions in Postgres failed"),
		f.count("committing offsets to Kafka failed")+f.count("committing offsets of revoked partitions to Kafka"), reaped)
}

// fenced counts the flushes that failed the fence, as the consumer logs them.
func (f *fleet) fenced() int {
	return f.count("flush fenced: ") // "final flush fenced: " included
}

func (l *loader) exited() bool {
	select {
	case err := <-l.done:
		l.done <- err
		return true
	default:
		return false
	}
}

// signal sends sig to the loader process.
func (l *loader) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := l.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %s: %v", sig, err)
	}
}

// assigned counts the partitions the loader has been assigned so far.
func (l *loader) assigned() int { return strings.Count(l.out.String(), "partition assigned") }

var healthAddrRE = regexp.MustCompile(`msg="serving health and metrics" addr=(\S+)`)

// healthAddr waits for the loader to log the address of its HTTP server.
func (l *loader) healthAddr(t *testing.T) string {
	t.Helper()
	var addr string
	waitFor(t, 30*time.Second, "the loader's health address in its log", func() bool {
		if m := healthAddrRE.FindStringSubmatch(l.out.String()); m != nil {
			addr = m[1]
			return true
		}
		return l.exited()
	})
	if addr == "" {
		t.Fatalf("loader exited before serving health:\n%s", tail(l.out.String(), 30))
	}
	return addr
}

// waitFor polls cond every 100ms until it holds, failing the test after
// timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Kafka commits never ahead of Postgres.

// commitWatch checks every OffsetCommit of the group that reaches the
// broker against the offsets table at that moment: Kafka must never be
// told an offset Postgres does not hold yet. Stored offsets only grow, so
// a commit that cannot be checked at once (Postgres down) is checked
// against the next successful read, which can only hide a violation,
// never invent one.
type commitWatch struct {
	dsn, group string
	names      map[[16]byte]string // topic ID → name (OffsetCommit v10 names topics by ID)

	mu         sync.Mutex
	conn       *pgx.Conn
	requests   int
	checked    int // partition offsets checked when committed
	late       int // partition offsets checked after Postgres came back
	pending    []committed
	violations []string
}

type committed struct {
	topic     string
	partition int32
	offset    int64
}

func watchCommits(t *testing.T, b *broker, dsn, group string, topics ...string) *commitWatch {
	t.Helper()
	w := &commitWatch{dsn: dsn, group: group, names: make(map[[16]byte]string)}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addrs...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := kadm.NewClient(cl).ListTopics(ctx, topics...)
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range td {
		w.names[d.ID] = d.Topic
	}
	b.c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		w.observe(req.(*kmsg.OffsetCommitRequest))
		return nil, nil, false // the broker handles it as usual
	})
	t.Cleanup(func() {
		w.mu.Lock()
		if w.conn != nil {
			w.conn.Close(context.Background())
		}
		w.mu.Unlock()
	})
	return w
}

func (w *commitWatch) observe(req *kmsg.OffsetCommitRequest) {
	if req.Group != w.group {
		return
	}
	var cs []committed
	for _, rt := range req.Topics {
		topic := rt.Topic
		if topic == "" {
			topic = w.names[rt.TopicID]
		}
		for _, rp := range rt.Partitions {
			cs = append(cs, committed{topic, rp.Partition, rp.Offset})
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.requests++
	// This runs on kfake's request loop: keep it short.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	stored, err := w.readLocked(ctx)
	if err != nil {
		w.pending = append(w.pending, cs...)
		return
	}
	w.late += len(w.pending)
	w.compareLocked(stored, w.pending, "late")
	w.pending = nil
	w.checked += len(cs)
	w.compareLocked(stored, cs, "at commit")
}

func (w *commitWatch) readLocked(ctx context.Context) (map[string]map[int32]int64, error) {
	if w.conn == nil {
		c, err := pgx.Connect(ctx, w.dsn)
		if err != nil {
			return nil, err
		}
		w.conn = c
	}
	rows, err := w.conn.Query(ctx, `SELECT topic, partition, next_offset FROM _segwarehouse.offsets WHERE consumer_group = $1 AND next_offset IS NOT NULL`, w.group)
	if err != nil {
		w.conn.Close(context.Background())
		w.conn = nil
		return nil, err
	}
	out := make(map[string]map[int32]int64)
	var topic string
	var p int32
	var off int64
	_, err = pgx.ForEachRow(rows, []any{&topic, &p, &off}, func() error {
		if out[topic] == nil {
			out[topic] = make(map[int32]int64)
		}
		out[topic][p] = off
		return nil
	})
	if err != nil {
		var pgErr interface{ SQLState() string }
		if errors.As(err, &pgErr) && pgErr.SQLState() == "42P01" {
			return out, nil // no offsets table yet: nothing stored
		}
		w.conn.Close(context.Background())
		w.conn = nil
		return nil, err
	}
	return out, nil
}

func (w *commitWatch) compareLocked(stored map[string]map[int32]int64, cs []committed, when string) {
	for _, c := range cs {
		s, ok := stored[c.topic][c.partition]
		if c.offset > 0 && (!ok || c.offset > s) {
			have := "nothing"
			if ok {
				have = strconv.FormatInt(s, 10)
			}
			w.violations = append(w.violations, fmt.Sprintf("Kafka commit of %s/%d at %d while Postgres holds %s (checked %s)", c.topic, c.partition, c.offset, have, when))
		}
	}
}

// finish checks what is still pending and fails the test on violations.
func (w *commitWatch) finish(t *testing.T) string {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		stored, err := w.readLocked(ctx)
		cancel()
		if err != nil {
			t.Errorf("reading the offsets table for %d pending commit checks: %v", len(w.pending), err)
		} else {
			w.late += len(w.pending)
			w.compareLocked(stored, w.pending, "late")
			w.pending = nil
		}
	}
	for _, v := range w.violations {
		t.Error(v)
	}
	return fmt.Sprintf("%d Kafka commit requests, %d partition offsets checked against Postgres at commit time, %d checked late (Postgres unreachable), %d ahead of Postgres",
		w.requests, w.checked, w.late, len(w.violations))
}

// ---------------------------------------------------------------------------
// Readiness.

// readiness polls a loader's /readyz every 50ms and records the changes
// of its status code (0: no answer).
type readiness struct {
	mu      sync.Mutex
	changes []int
}

func pollReady(t *testing.T, addr string) *readiness {
	r := &readiness{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	t.Cleanup(func() { cancel(); wg.Wait() })
	client := &http.Client{Timeout: time.Second}
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			code := 0
			if resp, err := client.Get("http://" + addr + "/readyz"); err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			r.mu.Lock()
			if len(r.changes) == 0 || r.changes[len(r.changes)-1] != code {
				r.changes = append(r.changes, code)
			}
			r.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return r
}

func (r *readiness) history() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes)
}

func (r *readiness) last() int {
	h := r.history()
	if len(h) == 0 {
		return -1
	}
	return h[len(h)-1]
}

// ---------------------------------------------------------------------------
// The checker.

// assertExactlyOnce checks, on the warehouse at dsn (a superuser's DSN),
// everything the loader promises about what w produced to b:
//   - every message id in its table exactly once, nothing else there; each
//     event table holds exactly the tracks of its event;
//   - users and accounts equal what an in-order replay gives (SPEC §11):
//     every column of a row holds the value of the call with the latest
//     received_at (ties: the greater messageId). Every identify/group call
//     of the workload carries every trait and context column, so the row
//     equals that winning call's identifies/groups row, column by column;
//   - the offsets table holds the topic's end offsets, and Kafka's
//     committed offsets are not ahead of it;
//   - _segwarehouse.rejected holds exactly the bad records produced.
//
// It returns a one-line summary of the figures.
func assertExactlyOnce(t *testing.T, dsn string, b *broker, w *workload) string {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	sch := w.topic
	var lost, dup, extra, rows int

	for _, table := range []string{"tracks", "pages", "identifies", "groups", "screens", "aliases"} {
		want := w.ids[table]
		got := map[string]int{}
		if tableExists(t, dsn, sch, table) {
			for _, r := range pgtest.Query(t, dsn, `SELECT id FROM `+pgx.Identifier{sch, table}.Sanitize()) {
				got[r[0].(string)]++
			}
		}
		var l, d, x []string
		for id := range want {
			if got[id] == 0 {
				l = append(l, id)
			}
		}
		for id, n := range got {
			rows += n
			if n > 1 {
				d = append(d, fmt.Sprintf("%s×%d", id, n))
			}
			if !want[id] {
				x = append(x, id)
			}
		}
		lost, dup, extra = lost+len(l), dup+len(d), extra+len(x)
		if len(l)+len(d)+len(x) > 0 {
			t.Errorf("%s.%s: %d rows for %d messages: %d lost %v, %d duplicated %v, %d unexpected %v",
				sch, table, len(got), len(want), len(l), first(l, 5), len(d), first(d, 5), len(x), first(x, 5))
		}
	}

	// Event tables: each holds exactly the tracks of its event.
	for _, r := range pgtest.Query(t, dsn, `SELECT event, count(*) FROM `+pgx.Identifier{sch, "tracks"}.Sanitize()+` GROUP BY event ORDER BY event`) {
		event, n := r[0].(string), r[1].(int64)
		tbl := pgx.Identifier{sch, event}.Sanitize()
		c := pgtest.Query(t, dsn, `SELECT count(*), count(DISTINCT e.id), count(t.id) FROM `+tbl+` e
			LEFT JOIN `+pgx.Identifier{sch, "tracks"}.Sanitize()+` t ON t.id = e.id AND t.event = $1`, event)[0]
		if c[0].(int64) != n || c[1].(int64) != n || c[2].(int64) != n {
			t.Errorf("event table %s: %d rows, %d distinct ids, %d matching tracks; tracks has %d of event %q", tbl, c[0], c[1], c[2], n, event)
			dup += int(c[0].(int64) - c[1].(int64))
		}
		rows += int(c[0].(int64))
	}

	mergeCheck := func(table, calls, key string, winners map[string]msgKey) {
		t.Helper()
		if len(winners) == 0 {
			return
		}
		if n := count(t, dsn, `SELECT count(*) FROM `+pgx.Identifier{sch, table}.Sanitize()); n != int64(len(winners)) {
			t.Errorf("%s.%s has %d rows, want %d", sch, table, n, len(winners))
		}
		var cols []string
		for _, c := range pgtest.Columns(t, dsn, sch, table) {
			if c.Name != "id" && c.Name != "uuid_ts" {
				cols = append(cols, c.Name)
			}
		}
		callCols := map[string]bool{}
		for _, c := range pgtest.Columns(t, dsn, sch, calls) {
			callCols[c.Name] = true
		}
		var diff []string
		for _, c := range cols {
			q := pgx.Identifier{c}.Sanitize()
			if !callCols[c] {
				t.Errorf("%s.%s has column %s that %s lacks", sch, table, c, calls)
				continue
			}
			diff = append(diff, fmt.Sprintf("CASE WHEN m.%s::text IS DISTINCT FROM c.%s::text THEN %s END", q, q, pgQuote(c)))
		}
		keys := make([]string, 0, len(winners))
		msgs := make([]string, 0, len(winners))
		for k, m := range winners {
			keys = append(keys, k)
			msgs = append(msgs, m.id)
		}
		sql := `SELECT w.k, m.id IS NULL, c.id IS NULL, concat_ws(',', ` + strings.Join(append(diff, "NULL"), ", ") + `)
			FROM unnest($1::text[], $2::text[]) AS w(k, msg)
			LEFT JOIN ` + pgx.Identifier{sch, table}.Sanitize() + ` m ON m.id = w.k
			LEFT JOIN ` + pgx.Identifier{sch, calls}.Sanitize() + ` c ON c.id = w.msg`
		bad := 0
		for _, r := range pgtest.Query(t, dsn, sql, keys, msgs) {
			k, noRow, noCall, cols := r[0].(string), r[1].(bool), r[2].(bool), r[3].(string)
			if noRow || noCall || cols != "" {
				bad++
				if bad <= 5 {
					t.Errorf("%s.%s row %s (%s %s): missing row %v, missing call %v, columns that differ from the winning call: %s",
						sch, table, k, key, winners[k].id, noRow, noCall, cols)
				}
			}
		}
		if bad > 0 {
			t.Errorf("%s.%s: %d of %d rows differ from an in-order replay", sch, table, bad, len(winners))
		}
	}
	mergeCheck("users", "identifies", "identify", w.users)
	mergeCheck("accounts", "groups", "group", w.accounts)

	// Rejected: exactly the bad records, once each.
	gotRej := map[recPos]int{}
	if tableExists(t, dsn, "_segwarehouse", "rejected") {
		for _, r := range pgtest.Query(t, dsn, `SELECT topic, partition, "offset", message FROM _segwarehouse.rejected`) {
			p := recPos{r[0].(string), r[1].(int32), r[2].(int64)}
			if r[3].(int32) != 0 {
				t.Errorf("rejected: %s has a rejection numbered %d; each bad record holds one bad message", p, r[3])
			}
			gotRej[p]++
		}
	}
	for p, kind := range w.bad {
		if gotRej[p] == 0 {
			t.Errorf("rejected: bad record %s (%s) is missing", p, kind)
		}
	}
	for p := range gotRej {
		if _, ok := w.bad[p]; !ok {
			t.Errorf("rejected: %s was rejected but was produced valid", p)
		}
	}

	// Offsets: Postgres holds the end offsets; Kafka is not ahead of it.
	ends := b.endOffsets(t, w.topic)
	stored := storedOffsets(t, dsn, faultGroup)
	if !offsetsEqual(ends, stored) || !offsetsEqual(stored, ends) {
		t.Errorf("offsets table %v, topic end offsets %v", stored, ends)
	}
	committed := b.committedOffsets(t, faultGroup)
	for topic, ps := range committed {
		for p, off := range ps {
			if off > stored[topic][p] {
				t.Errorf("Kafka holds committed offset %d for %s/%d, Postgres %d", off, topic, p, stored[topic][p])
			}
		}
	}
	if lost+dup+extra > 0 {
		t.Errorf("%d messages lost, %d duplicated, %d unexpected", lost, dup, extra)
	}
	return fmt.Sprintf("checked %d event rows, %d users, %d accounts, %d rejected: %d lost, %d duplicated",
		rows, len(w.users), len(w.accounts), len(gotRej), lost, dup)
}

func first(s []string, n int) []string {
	sort.Strings(s)
	if len(s) > n {
		return s[:n]
	}
	return s
}

func pgQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// committedOffsets returns the group's committed offsets in Kafka.
func (b *broker) committedOffsets(t *testing.T, group string) map[string]map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetching committed offsets: %v", err)
	}
	out := map[string]map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Err != nil {
			t.Errorf("committed offset of %s/%d: %v", o.Topic, o.Partition, o.Err)
			return
		}
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]int64{}
		}
		out[o.Topic][o.Partition] = o.At
	})
	return out
}

// ownersOf reads who owns each partition in the offsets table.
func ownersOf(t *testing.T, dsn, topic string) map[int32]string {
	t.Helper()
	out := map[int32]string{}
	if !tableExists(t, dsn, "_segwarehouse", "offsets") {
		return out
	}
	for _, r := range pgtest.Query(t, dsn, `SELECT partition, owner FROM _segwarehouse.offsets WHERE consumer_group = $1 AND topic = $2`, faultGroup, topic) {
		out[r[0].(int32)] = r[1].(string)
	}
	return out
}

func distinct(m map[int32]string) map[string]int {
	out := map[string]int{}
	for _, v := range m {
		out[v]++
	}
	return out
}

// waitLoaded is waitCaughtUp for the fault tests: on timeout it first logs
// what the group and Postgres look like (diagnose).
func waitLoaded(t *testing.T, b *broker, dsn string, timeout time.Duration, topic string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var want, got map[string]map[int32]int64
	for time.Now().Before(deadline) {
		want = b.endOffsets(t, topic)
		if tableExists(t, dsn, "_segwarehouse", "offsets") {
			got = storedOffsets(t, dsn, faultGroup)
			if offsetsEqual(want, got) {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	diagnose(t, b, dsn)
	t.Fatalf("the loaders did not catch up within %s:\n end offsets %v\n stored      %v", timeout, want, got)
}

// diagnose logs the consumer group's members and assignments as the broker
// sees them, the warehouse's backends (with what blocks them) and the
// offsets table.
func diagnose(t *testing.T, b *broker, dsn string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addrs...))
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		groups, err := kadm.NewClient(cl).DescribeGroups(ctx, faultGroup)
		cancel()
		cl.Close()
		if err != nil {
			t.Logf("diagnose: describing the group: %v", err)
		}
		for _, g := range groups {
			t.Logf("diagnose: group %s state %s protocol %s, %d members (err %v)", g.Group, g.State, g.Protocol, len(g.Members), g.Err)
			for _, m := range g.Members {
				var parts []int32
				if a, ok := m.Assigned.AsConsumer(); ok {
					for _, tp := range a.Topics {
						parts = append(parts, tp.Partitions...)
					}
				}
				t.Logf("diagnose:   member %s client %s host %s assigned %v", m.MemberID, m.ClientID, m.ClientHost, parts)
			}
		}
	}
	for _, r := range pgtest.Query(t, dsn, `SELECT pid, application_name, state, coalesce(wait_event_type, ''), coalesce(wait_event, ''),
			backend_xid IS NOT NULL, coalesce(extract(epoch FROM now() - xact_start)::int, -1), pg_blocking_pids(pid)::text, left(query, 80)
		FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() ORDER BY application_name, pid`) {
		t.Logf("diagnose: backend %v app %v state %v wait %v/%v writing %v xact %vs blocked by %v: %v", r...)
	}
	for _, r := range pgtest.Query(t, dsn, `SELECT topic, partition, owner, next_offset, updated_at FROM _segwarehouse.offsets ORDER BY 1, 2`) {
		t.Logf("diagnose: offsets %v", r)
	}
}
