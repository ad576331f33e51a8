package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sourcegraph/conc"
	"github.com/sourcegraph/conc/pool"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/segwarehouse/segwarehouse/schema"
)

// leaveTimeout bounds leaving the group when a session ends.
const leaveTimeout = 5 * time.Second

var errClientClosed = errors.New("kafka client closed unexpectedly")

// heartbeatInterval is kgo's default (3s) or a third of the session
// timeout, whichever is shorter, as Kafka advises (heartbeat.interval.ms no
// higher than a third of session.timeout.ms): with the default, a session
// timeout of 3s or less lost the membership between heartbeats, and kgo
// refused to start with one under 3s.
func heartbeatInterval(session time.Duration) time.Duration {
	return max(min(3*time.Second, session/3), time.Millisecond)
}

type tp struct {
	topic     string
	partition int32
}

func (k tp) less(o tp) int {
	return cmp.Or(cmp.Compare(k.topic, o.topic), cmp.Compare(k.partition, o.partition))
}

// part is one owned partition. A new part (new pointer) is made at every
// claim, so a flight that outlives its partition's ownership can tell.
type part struct {
	tp
	base    int64 // From of the partition's next batch: Postgres's offset once the flight in the air lands; -1 none stored
	stored  int64 // the offset Postgres holds, as far as this session knows; -1 none
	first   int64 // first offset fetched, for lag while nothing is stored; -1 none
	hwm     int64 // high watermark of the last fetch; -1 unknown
	pending []pending
	// gone is set, under session.mu, when a rebalance starts giving the
	// partition up: no record is taken for it and no staged flush takes
	// off with it, while the release waits for the flight in the air.
	gone  bool
	last  int // records the last flush took: the capacity of the next pending slice
	rows  int
	bytes int
	since time.Time // arrival of the oldest pending record
}

// pending is one decoded record waiting for its flush. ts is kept to
// reject the record if Postgres refuses it; its raw value is not (see
// Consumer.refetch).
type pending struct {
	d    *schema.Decoded
	ts   time.Time
	link trace.SpanContext // the producer's span, when traced
}

// staged is the next flush, taken from the pending records, built and
// prepared by the sink while the flight before it is in the air, so that
// the flush's own work in Go overlaps Postgres's work on the previous one.
// Its chunks are checked again when it takes off: a partition revoked or
// claimed anew since then is left out (and the batch built again).
type staged struct {
	chunks []chunk
	b      *schema.Batch
	ctx    context.Context
	span   trace.Span
}

// takeoff returns the staged chunks whose partitions are still owned
// (parts holds the same part, not being given up), and the staged batch
// when that is all of them; nil when a partition moved since, so that the batch of what is
// still owned is built anew.
func (st *staged) takeoff(parts map[tp]*part) ([]chunk, *schema.Batch) {
	var chunks []chunk
	for _, ch := range st.chunks {
		if parts[ch.p.tp] == ch.p && !ch.p.gone {
			chunks = append(chunks, ch)
		}
	}
	if len(chunks) != len(st.chunks) {
		return chunks, nil
	}
	return chunks, st.b
}

// session is one Kafka client's life: join, consume, leave. A fenced flush
// ends it; Run starts a new one, which re-claims every partition.
type session struct {
	c  *Consumer
	cl *kgo.Client

	// flightCtx bounds Load, Claim-independent work and commits; it ends
	// ShutdownTimeout after Run's ctx, or when the session is torn down
	// on an error.
	flightCtx    context.Context
	cancelFlight context.CancelFunc
	flights      conc.WaitGroup // the flusher goroutines (at most one at a time)
	loaded       atomic.Bool    // a flush landed in this session
	// sizes is the rows per table of the last batch built, which the next
	// one is sized for (schema.BatchBuilder.Expect).
	sizes atomic.Pointer[schema.Sizes]

	// commitMu orders Kafka commits (flights, revocations, shutdown) so
	// that an older offset never overtakes a newer one.
	commitMu sync.Mutex

	mu           sync.Mutex // guards everything below; never held across I/O
	parts        map[tp]*part
	flight       *flight // the flush in the air, nil if none; only run sets and clears it
	staged       *staged // the next flush, built while flight is in the air; only run sets and clears it
	dirty        map[tp]int64
	commitFailed bool               // the last commit failed: no commit-only flight until data flows
	committing   int                // flights' Kafka commits running or waiting: no commit-only flight meanwhile
	wake         context.CancelFunc // cancels the poll in progress
	pendRecords  int
	pendRows     int
	pendBytes    int
	quiet        bool          // a poll found nothing new for quietPeriod while enough was pending (quietDue)
	fetchErrs    map[tp]string // last fetch error logged per partition, to log changes only
}

func (c *Consumer) newSession(flushCtx context.Context) (*session, error) {
	s := &session{
		c:         c,
		parts:     make(map[tp]*part),
		dirty:     make(map[tp]int64),
		fetchErrs: make(map[tp]string),
	}
	s.flightCtx, s.cancelFlight = context.WithCancel(flushCtx)
	opts := slices.Clone(c.clientOpts)
	opts = append(opts,
		kgo.ConsumerGroup(c.cfg.Group),
		kgo.ConsumeTopics(c.cfg.Topics...),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(c.cfg.SessionTimeout),
		kgo.HeartbeatInterval(heartbeatInterval(c.cfg.SessionTimeout)),
		kgo.RebalanceTimeout(c.cfg.RebalanceTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Only used when a fetch offset is out of range (Postgres holds
		// an offset that retention deleted): start at the log start. A
		// fresh partition's start comes from AdjustFetchOffsetsFn.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AdjustFetchOffsetsFn(s.adjust),
		kgo.OnPartitionsAssigned(s.assigned),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.lost),
		kgo.WithLogger(kgoLogger{c.log}),
	)
	if c.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(c.cfg.InstanceID))
	}
	opts = append(opts, c.extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		s.cancelFlight()
		return nil, fmt.Errorf("creating the Kafka client: %w", err)
	}
	s.cl = cl
	c.setSession(s)
	return s, nil
}

// run is the poll loop. It returns nil after a clean shutdown, a fenced
// error to restart the session, or a fatal error.
func (s *session) run(ctx context.Context) error {
	defer s.teardown()
	for {
		if ctx.Err() != nil {
			return s.shutdown()
		}
		if err := s.reap(); err != nil {
			return err
		}
		s.maybeFlush(false)
		if f := s.mustWait(); f != nil {
			// The next batch is full and the flusher busy: build and
			// prepare it meanwhile, then stop polling (bounding memory)
			// until the flight lands. Rebalances may run meanwhile;
			// nothing polled is held.
			s.stage()
			select {
			case <-ctx.Done():
			case <-f.done:
			}
			continue
		}
		fetches := s.poll(ctx)
		err := s.handle(fetches)
		s.cl.AllowRebalance()
		if err != nil {
			return err
		}
	}
}

// teardown ends the session: the flight (if any) is cancelled and waited
// for, the state dropped, the group left and the client closed. It runs on
// Run's goroutine, never in a callback.
func (s *session) teardown() {
	s.cancelFlight()
	s.flights.Wait()
	s.mu.Lock()
	if s.staged != nil {
		endSpan(s.staged.span, context.Canceled)
		s.staged = nil
	}
	clear(s.parts)
	clear(s.dirty)
	s.pendRecords, s.pendRows, s.pendBytes = 0, 0, 0
	s.mu.Unlock()
	s.cl.AllowRebalance()
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	err := s.cl.LeaveGroupContext(ctx)
	cancel()
	s.cl.Close()
	s.c.setJoined(false)
	if err != nil {
		s.c.log.Info("left the consumer group", "err", err)
	} else {
		s.c.log.Info("left the consumer group")
	}
}

// shutdown runs once Run's ctx is cancelled: no more polling; the flight in
// the air lands, what is pending is flushed, offsets are committed, all
// under flightCtx (ShutdownTimeout).
func (s *session) shutdown() error {
	s.cl.AllowRebalance()
	s.mu.Lock()
	n := s.pendRows
	s.mu.Unlock()
	s.c.log.Info("stopping: landing the flush in flight, flushing pending records, committing offsets", "rows", n, "dur", s.c.cfg.ShutdownTimeout)
	err := s.land()
	// The staged flush (if any), then what is still pending.
	for err == nil && s.unflushed() {
		s.maybeFlush(true)
		err = s.land()
	}
	switch {
	case err == nil:
		s.commitDirty(s.flightCtx)
		return nil
	case isFenced(err):
		// Another loader owns a partition now, or the offsets table went
		// back; either way the records are read again from Postgres's
		// offsets.
		s.c.log.Info("final flush fenced: another loader owns a partition, or the offsets table went back; its records are read again from Postgres's offsets", "err", err)
		return nil
	case s.flightCtx.Err() != nil:
		s.c.log.Warn("shutdown timeout reached before the final flush landed; its records are re-read from Postgres's offsets on restart", "err", err, "dur", s.c.cfg.ShutdownTimeout)
		return nil
	}
	return err
}

// land waits for the flight in the air, if any, and reaps it.
func (s *session) land() error {
	if f := s.current(); f != nil {
		<-f.done
	}
	return s.reap()
}

// unflushed reports whether records wait for a flush, staged or pending.
func (s *session) unflushed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.staged != nil || s.pendRecords > 0
}

func (s *session) current() *flight {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flight
}

// reap clears a landed flight and returns its error.
func (s *session) reap() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flight
	if f == nil || !f.landed() {
		return nil
	}
	s.flight = nil
	return f.err
}

// mustWait returns the flight to wait for when the next batch is full (or
// already staged).
func (s *session) mustWait() *flight {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flight != nil && (s.staged != nil || s.pendRows >= s.c.cfg.FlushRows || s.pendBytes >= s.c.cfg.FlushBytes) {
		return s.flight
	}
	return nil
}

// maybeFlush starts a flight when no flight is in the air and a flush is
// staged, or the pending records are due (or force), or when Kafka lacks
// offsets Postgres holds.
func (s *session) maybeFlush(force bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flight != nil {
		return
	}
	now := time.Now()
	if st := s.staged; st != nil {
		s.staged = nil
		f := &flight{start: now, done: make(chan struct{}), ctx: st.ctx, span: st.span}
		f.chunks, f.batch = st.takeoff(s.parts)
		if len(f.chunks) == 0 {
			endSpan(f.span, nil)
			f.span, f.ctx = nil, nil
		} else {
			s.c.flightBegan(now)
		}
		s.flight = f
		s.flights.Go(func() { s.fly(f) })
		return
	}
	cfg := &s.c.cfg
	due := s.pendRecords > 0 && (force ||
		s.pendRows >= cfg.FlushRows ||
		s.pendBytes >= cfg.FlushBytes ||
		now.Sub(s.oldestLocked()) >= cfg.FlushInterval ||
		(s.quiet && s.quietDueLocked()))
	s.quiet = false
	if !due && (len(s.dirty) == 0 || s.commitFailed || s.committing > 0) {
		return
	}
	f := &flight{start: now, done: make(chan struct{})}
	if due {
		f.chunks = s.takeLocked()
		s.c.flightBegan(now)
	}
	s.flight = f
	s.flights.Go(func() { s.fly(f) })
}

// stage takes the pending records as the next flush while a flight is in
// the air, builds their batch and lets the sink prepare it. It runs on
// run's goroutine, which would otherwise wait for the flight.
func (s *session) stage() {
	s.mu.Lock()
	if s.staged != nil || s.flight == nil || s.pendRecords == 0 {
		s.mu.Unlock()
		return
	}
	chunks := s.takeLocked()
	s.mu.Unlock()

	ctx, span := s.c.startFlushSpan(s.flightCtx, chunks)
	b := s.build(chunks)
	if p, ok := s.c.sink.(Preparer); ok {
		if err := p.Prepare(ctx, b); err != nil {
			// Load prepares again, retrying and reporting as it does.
			s.c.log.Debug("preparing the next flush failed; the flush will prepare it again", "err", err)
		}
	}
	s.mu.Lock()
	s.staged = &staged{chunks: chunks, b: b, ctx: ctx, span: span}
	s.mu.Unlock()
}

// takeLocked moves every pending record into chunks, one per partition in
// (topic, partition) order, and advances each partition's base.
func (s *session) takeLocked() []chunk {
	keys := make([]tp, 0, len(s.parts))
	for k, p := range s.parts {
		if len(p.pending) > 0 && !p.gone {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, tp.less)
	chunks := make([]chunk, 0, len(keys))
	for _, k := range keys {
		p := s.parts[k]
		chunks = append(chunks, chunk{p: p, from: p.base, recs: p.pending})
		p.base = p.pending[len(p.pending)-1].d.Pos.Offset + 1
		p.last = len(p.pending)
		p.pending, p.rows, p.bytes = nil, 0, 0
	}
	s.pendRecords, s.pendRows, s.pendBytes = 0, 0, 0
	return chunks
}

func (s *session) oldestLocked() time.Time {
	var t time.Time
	for _, p := range s.parts {
		if len(p.pending) > 0 && (t.IsZero() || p.since.Before(t)) {
			t = p.since
		}
	}
	return t
}

// dropPendingLocked forgets a partition's pending records.
func (s *session) dropPendingLocked(p *part) {
	s.pendRecords -= len(p.pending)
	s.pendRows -= p.rows
	s.pendBytes -= p.bytes
	p.pending, p.rows, p.bytes = nil, 0, 0
}

// poll waits for records, for the oldest pending record's flush deadline
// (when no flight is in the air), or for a wake-up (a flight landed, a
// claim wants its offsets committed).
func (s *session) poll(ctx context.Context) kgo.Fetches {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	if s.flight != nil && s.flight.landed() {
		s.mu.Unlock()
		return nil
	}
	var quietAt time.Time
	if s.flight == nil && s.pendRecords > 0 {
		deadline := s.oldestLocked().Add(s.c.cfg.FlushInterval)
		if s.quietDueLocked() {
			if q := time.Now().Add(s.c.cfg.quietPeriod()); q.Before(deadline) {
				quietAt, deadline = q, q
			}
		}
		var cancelDeadline context.CancelFunc
		pctx, cancelDeadline = context.WithDeadline(pctx, deadline)
		defer cancelDeadline()
	}
	s.wake = cancel
	s.mu.Unlock()

	fetches := s.cl.PollRecords(pctx, s.c.cfg.PollRecords)

	s.mu.Lock()
	s.wake = nil
	// Nothing came for the quiet period (not woken early): the flush need
	// not wait for records that are not coming.
	s.quiet = !quietAt.IsZero() && fetches.NumRecords() == 0 && !time.Now().Before(quietAt)
	s.mu.Unlock()
	return fetches
}

// A flush also ends when its input goes quiet: at the end of a backlog or
// of a producer's burst, holding the pending records for the rest of
// FlushInterval gathers nothing more and only delays them. It needs
// FlushQuiet (FlushInterval/4 by default) without a new record, so that a
// stream whose producers linger a little keeps batching by the interval,
// and a tenth of a full flush (rows or bytes), so that a trickle of a few
// records still goes once per interval, not once per record.
func (c *Config) quietPeriod() time.Duration {
	if c.FlushQuiet > 0 {
		return c.FlushQuiet
	}
	return c.FlushInterval / 4
}

// quietDueLocked reports whether enough is pending for a quiet input to
// end the flush.
func (s *session) quietDueLocked() bool {
	return s.pendRows*10 >= s.c.cfg.FlushRows || s.pendBytes*10 >= s.c.cfg.FlushBytes
}

func (s *session) kickLocked() {
	if s.wake != nil {
		s.wake()
	}
}

// span is one partition's records from one poll.
type span struct {
	p    *part
	recs []*kgo.Record
	at   int // index of recs[0] in the poll's flat slice
	hwm  int64
}

// handle decodes a poll's records in parallel and appends them to their
// partitions' pending records, in offset order.
func (s *session) handle(fetches kgo.Fetches) error {
	if fetches.IsClientClosed() {
		return errClientClosed
	}
	var spans []span
	var flat []*kgo.Record
	s.mu.Lock()
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		k := tp{fp.Topic, fp.Partition}
		if fp.Err != nil {
			if !errors.Is(fp.Err, context.Canceled) && !errors.Is(fp.Err, context.DeadlineExceeded) {
				s.fetchErrorLocked(k, fp.Err)
			}
			return
		}
		delete(s.fetchErrs, k)
		p := s.parts[k]
		if p == nil {
			if len(fp.Records) > 0 {
				// Cannot happen: fetching starts after the claim. Drop
				// the records rather than load them unfenced; Postgres's
				// offset has not moved, so nothing is lost.
				s.c.log.Error("records for a partition that was never claimed; dropped", "topic", k.topic, "partition", k.partition, "offset", fp.Records[0].Offset)
			}
			return
		}
		spans = append(spans, span{p: p, recs: fp.Records, at: len(flat), hwm: fp.HighWatermark})
		flat = append(flat, fp.Records...)
	})
	s.mu.Unlock()

	decoded := s.decode(flat)
	s.c.n.records.Add(int64(len(flat)))

	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, sp := range spans {
		p := sp.p
		if s.parts[p.tp] != p || p.gone {
			continue // revoked or re-claimed while decoding; the next owner starts from Postgres
		}
		p.hwm = sp.hwm
		for i, rec := range sp.recs {
			if p.stored < 0 && p.first < 0 {
				p.first = rec.Offset
			}
			// Never take an offset twice: below base it is in Postgres or
			// in the air; at or below the last pending it is pending.
			if (p.base >= 0 && rec.Offset < p.base) ||
				(len(p.pending) > 0 && rec.Offset <= p.pending[len(p.pending)-1].d.Pos.Offset) {
				continue
			}
			d := decoded[sp.at+i]
			if len(p.pending) == 0 {
				p.since = now
				if p.pending == nil && p.last > 0 {
					// Sized once, not grown from nothing in every flush.
					p.pending = make([]pending, 0, p.last)
				}
			}
			pd := pending{d: d, ts: rec.Timestamp}
			if s.c.tracer != nil {
				pd.link = producerSpan(rec)
			}
			p.pending = append(p.pending, pd)
			p.rows += len(d.Rows)
			p.bytes += d.Bytes
			s.pendRecords++
			s.pendRows += len(d.Rows)
			s.pendBytes += d.Bytes
		}
	}
	return nil
}

// fetchErrorLocked logs a fetch error when a partition's error changes
// (kgo keeps retrying; the same error on every poll would flood the log).
func (s *session) fetchErrorLocked(k tp, err error) {
	var ge *kgo.ErrGroupSession
	if errors.As(err, &ge) {
		// Not a partition's: kgo lost the group (partitions lost, rejoining
		// with backoff). Rare, so always logged.
		s.c.log.Info("consumer group session failed; rejoining", "err", err)
		return
	}
	if s.fetchErrs[k] == err.Error() {
		return
	}
	s.fetchErrs[k] = err.Error()
	s.c.log.Warn("fetching from Kafka", "topic", k.topic, "partition", k.partition, "err", err)
}

// decode runs the decoder over recs with up to Workers goroutines (one
// pool per poll), writing results by index so that order is kept.
func (s *session) decode(recs []*kgo.Record) []*schema.Decoded {
	out := make([]*schema.Decoded, len(recs))
	n, w := len(recs), s.c.workers
	if n < 64 || w <= 1 {
		for i, r := range recs {
			out[i] = s.decodeOne(r)
		}
		return out
	}
	step := (n + w - 1) / w
	p := pool.New().WithMaxGoroutines(w)
	for lo := 0; lo < n; lo += step {
		hi := min(lo+step, n)
		p.Go(func() {
			for i := lo; i < hi; i++ {
				out[i] = s.decodeOne(recs[i])
			}
		})
	}
	p.Wait()
	return out
}

func (s *session) decodeOne(r *kgo.Record) *schema.Decoded {
	rec := &schema.Record{
		Topic:     r.Topic,
		Partition: r.Partition,
		Offset:    r.Offset,
		Timestamp: r.Timestamp,
		Value:     r.Value,
	}
	if h := s.c.sourceHeader; h != "" {
		for _, hd := range r.Headers {
			if hd.Key == h {
				rec.SourceHeader = string(hd.Value)
				break
			}
		}
	}
	d := s.c.dec.Decode(rec)
	if d == nil {
		d = &schema.Decoded{}
	}
	d.Pos = rec.Pos()
	if d.Bytes == 0 {
		d.Bytes = len(r.Value)
	}
	return d
}

// lag reports Postgres's distance to each fetched partition's high
// watermark.
func (s *session) lag() []PartitionLag {
	s.mu.Lock()
	m := make(map[tp]int64, len(s.parts))
	for k, p := range s.parts {
		if p.hwm < 0 {
			continue
		}
		at := p.stored
		if at < 0 {
			at = p.first
		}
		if at < 0 {
			continue
		}
		m[k] = max(p.hwm-at, 0)
	}
	s.mu.Unlock()
	return sortedLag(m)
}

// adjust is kgo's AdjustFetchOffsetsFn. kgo calls it once a session's new
// partitions' committed offsets are fetched and before it assigns them to
// the fetcher (consumer_group.go fetchOffsets → assignPartitions), so no
// record of these partitions is fetched from Kafka's offset: each starts at
// the offset Postgres holds, or at START_FROM when it holds none. The claim
// makes this consumer the partitions' owner in Postgres, which fences any
// earlier owner's flush still in the air. ctx ends when the session starts
// revoking; a claim that fails until then makes kgo rejoin.
func (s *session) adjust(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	want := make(map[string][]int32, len(offsets))
	for t, ps := range offsets {
		for p := range ps {
			want[t] = append(want[t], p)
		}
		slices.Sort(want[t])
	}
	stored, err := s.claim(ctx, want)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	for t, ps := range want {
		for _, p := range ps {
			k := tp{t, p}
			off, ok := stored[t][p]
			if ok && off >= 0 {
				offsets[t][p] = kgo.NewOffset().At(off)
				s.dirty[k] = off // Kafka may hold another offset; make it match
				s.c.log.Info("partition assigned; resuming at the offset stored in Postgres", "topic", t, "partition", p, "offset", off)
			} else {
				off = -1
				offsets[t][p] = s.c.start
				s.c.log.Info("partition assigned; no offset stored in Postgres, starting at SEGWH_START_FROM", "topic", t, "partition", p)
			}
			if old := s.parts[k]; old != nil {
				s.dropPendingLocked(old)
			}
			s.parts[k] = &part{tp: k, base: off, stored: off, first: -1, hwm: -1}
		}
	}
	s.commitFailed = false
	s.kickLocked()
	s.mu.Unlock()
	return offsets, nil
}

// claim calls Sink.Claim, retrying with backoff until it works or ctx ends.
func (s *session) claim(ctx context.Context, want map[string][]int32) (map[string]map[int32]int64, error) {
	for attempt := 1; ; attempt++ {
		stored, err := s.c.sink.Claim(ctx, s.c.cfg.Group, s.c.owner, want)
		if err == nil {
			s.c.sinkOK()
			return stored, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("claiming partitions: %w", err)
		}
		d := backoff(attempt)
		s.c.sinkFailing(err)
		s.c.log.Info("claiming partitions in Postgres failed; retrying", "err", err, "dur", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("claiming partitions: %w", err)
		case <-t.C:
		}
	}
}

// assigned is OnPartitionsAssigned: kgo calls it at every new group
// generation, even when nothing new is assigned.
func (s *session) assigned(context.Context, *kgo.Client, map[string][]int32) {
	s.c.n.rebalances.Add(1)
	s.c.setJoined(true)
}

// revoked is OnPartitionsRevoked: the partitions go to another member once
// this returns, so their final offsets are committed here.
func (s *session) revoked(ctx context.Context, _ *kgo.Client, gone map[string][]int32) {
	s.release(ctx, gone, "revoked")
}

// lost is OnPartitionsLost: the partitions may already be someone else's.
func (s *session) lost(ctx context.Context, _ *kgo.Client, gone map[string][]int32) {
	s.c.setJoined(false)
	s.release(ctx, gone, "lost")
}

// release gives partitions up: their pending records are dropped at once
// (the next owner starts from Postgres's offset), the flight in the air is
// waited for (at most half the rebalance timeout, so that a stuck flush
// cannot stall the group: if it lands later it is fenced), and the offsets
// Postgres holds for them are committed to Kafka. It runs inside kgo's
// rebalance callbacks, which kgo never runs during join/sync, so the commit
// cannot wait on the rebalance that waits on it.
func (s *session) release(ctx context.Context, gone map[string][]int32, how string) {
	s.mu.Lock()
	var mine []*part
	for t, ps := range gone {
		for _, p := range ps {
			if pt := s.parts[tp{t, p}]; pt != nil {
				s.dropPendingLocked(pt)
				pt.gone = true
				mine = append(mine, pt)
			}
		}
	}
	f := s.flight
	s.mu.Unlock()
	if len(mine) == 0 {
		return
	}

	if f != nil && f.covers(mine) {
		t := time.NewTimer(s.c.cfg.RebalanceTimeout / 2)
		select {
		case <-f.done:
		case <-t.C:
			s.c.log.Warn("flush still running for partitions being "+how+"; giving them up, the flush will be fenced", "dur", time.Since(f.start).Round(time.Millisecond))
		}
		t.Stop()
	}

	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	offs := make(map[tp]int64)
	for _, p := range mine {
		if s.parts[p.tp] != p {
			continue
		}
		if off, ok := s.dirty[p.tp]; ok && how == "revoked" {
			offs[p.tp] = off
		}
		delete(s.dirty, p.tp)
		delete(s.parts, p.tp)
		delete(s.fetchErrs, p.tp)
		s.c.log.Info("partition "+how, "topic", p.topic, "partition", p.partition, "offset", p.stored)
	}
	s.mu.Unlock()
	if len(offs) > 0 {
		cctx, cancel := context.WithTimeout(ctx, max(s.c.cfg.RebalanceTimeout/4, time.Second))
		defer cancel()
		if err := s.commit(cctx, offs); err != nil {
			s.c.log.Info("committing offsets of revoked partitions to Kafka", "err", err)
		}
	}
}
