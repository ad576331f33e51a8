package consumer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/trace"

	"github.com/segwarehouse/segwarehouse/schema"
)

// flight is one flush in the air: Load (split and retried as needed),
// then the Kafka commit. chunks is empty for a commit-only flight.
type flight struct {
	chunks []chunk
	batch  *schema.Batch // built (and prepared) while staged; nil: build it
	ctx    context.Context
	span   trace.Span // the flush span, started when staged; nil: start it
	start  time.Time
	done   chan struct{} // closed (under session.mu) when the flight has landed
	err    error         // set before done is closed
}

func (f *flight) landed() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

func (f *flight) covers(ps []*part) bool {
	for _, ch := range f.chunks {
		for _, p := range ps {
			if ch.p == p {
				return true
			}
		}
	}
	return false
}

// chunk is one partition's contiguous records in a batch; from is the
// offset Postgres must hold before the batch.
type chunk struct {
	p    *part
	from int64
	recs []pending
}

func (ch chunk) to() int64 { return ch.recs[len(ch.recs)-1].d.Pos.Offset + 1 }

// fly runs on the flusher goroutine: load, record the new offsets, land
// (the next flight may take off), then commit them to Kafka. Kafka is
// committed only after Load returned nil, and only to the offsets that
// Load stored.
func (s *session) fly(f *flight) {
	ctx := s.flightCtx
	var err error
	if len(f.chunks) > 0 {
		span := f.span
		if span != nil {
			ctx = f.ctx
		} else {
			ctx, span = s.c.startFlushSpan(ctx, f.chunks)
		}
		err = s.load(ctx, f.chunks, f.batch, 0)
		endSpan(span, err)
		if err == nil {
			s.loaded.Store(true)
			s.c.n.lastFlush.Store(int64(time.Since(f.start)))
			s.mu.Lock()
			for _, ch := range f.chunks {
				if s.parts[ch.p.tp] == ch.p { // still ours
					ch.p.stored = ch.to()
					s.dirty[ch.p.tp] = ch.to()
				}
			}
			s.mu.Unlock()
		}
		s.c.flightBegan(time.Time{})
	}
	data := len(f.chunks) > 0
	if err == nil && !data {
		s.commitDirty(ctx) // the flight's whole point
	}
	s.mu.Lock()
	f.err = err
	close(f.done)
	s.kickLocked()
	s.mu.Unlock()
	if err == nil && data {
		// Kafka's offsets only serve lag tools: the next flight takes off
		// now instead of after a round trip to the group coordinator, and
		// a rebalance waiting for this flight does not wait for the commit
		// either. commitMu keeps the commits in order; the session's
		// teardown waits for this goroutine.
		s.commitDirty(ctx)
	}
}

// load writes chunks in one batch (b, when it is already built from
// them). When the sink calls the batch poison it is split in two, each half
// keeping every partition's offsets contiguous, and the halves loaded in
// turn, until the record at fault is alone; that record is then rejected.
func (s *session) load(ctx context.Context, chunks []chunk, b *schema.Batch, depth int) error {
	if b == nil {
		b = s.build(chunks)
	}
	err := s.loadRetry(ctx, b)
	if err == nil {
		s.c.loaded(b)
		return nil
	}
	if !isPoison(err) {
		return err
	}
	n := 0
	for _, ch := range chunks {
		n += len(ch.recs)
	}
	if n == 1 {
		return s.reject(ctx, chunks[0], err)
	}
	if depth == 0 {
		s.c.log.Info("the sink refused a flush as poison; splitting it to isolate the record", "rows", batchRows(b), "err", err)
	}
	left, right := split(chunks)
	if err := s.load(ctx, left, nil, depth+1); err != nil {
		return err
	}
	return s.load(ctx, right, nil, depth+1)
}

// split halves chunks: the first half of each partition's records, then the
// rest (whose from is where the first half ends). When every partition has
// one record, the partitions are split instead. Both halves are smaller.
func split(chunks []chunk) (left, right []chunk) {
	multi := false
	for _, ch := range chunks {
		if len(ch.recs) > 1 {
			multi = true
			break
		}
	}
	if !multi {
		h := len(chunks) / 2
		return chunks[:h], chunks[h:]
	}
	for _, ch := range chunks {
		k := (len(ch.recs) + 1) / 2
		left = append(left, chunk{p: ch.p, from: ch.from, recs: ch.recs[:k]})
		if k < len(ch.recs) {
			right = append(right, chunk{p: ch.p, from: ch.recs[k-1].d.Pos.Offset + 1, recs: ch.recs[k:]})
		}
	}
	return left, right
}

// reject loads one record the sink refused as a schema.Rejected carrying
// the sink's error and the record's raw value, read again from Kafka,
// advancing its offset. If the sink refuses even that (the raw bytes
// themselves), it tries once more without them.
func (s *session) reject(ctx context.Context, ch chunk, cause error) error {
	r := ch.recs[0]
	pos := r.d.Pos
	s.c.log.Warn("record refused by the sink; rejecting it", "topic", pos.Topic, "partition", pos.Partition, "offset", pos.Offset, "err", cause)
	rej := schema.Rejected{Pos: pos, Timestamp: r.ts, Reason: cause.Error(), Code: "postgres"}
	raw, err := s.c.refetch(ctx, pos)
	switch {
	case errors.Is(err, errRecordGone):
		rej.Reason += " (raw value not stored: " + err.Error() + ")"
	case err != nil:
		return err
	default:
		rej.Raw = raw
	}
	for range 2 {
		bb := schema.NewBatchBuilder(s.c.cfg.Group, s.c.owner)
		bb.Start(pos.Topic, pos.Partition, ch.from)
		bb.Add(&schema.Decoded{Pos: pos, Rejected: []schema.Rejected{rej}, Bytes: r.d.Bytes})
		b := bb.Batch()
		err := s.loadRetry(ctx, b)
		if err == nil {
			s.c.loaded(b)
			return nil
		}
		if !isPoison(err) {
			return err
		}
		rej.Raw = nil
		rej.Reason = cause.Error() + " (raw value not stored: " + err.Error() + ")"
		cause = err
	}
	return fmt.Errorf("%s/%d at offset %d: the sink refuses both the record and its rejection: %w", pos.Topic, pos.Partition, pos.Offset, cause)
}

// build makes the batch of chunks, in (topic, partition, offset) order.
// The batch shares the decoded rows; the sink must not modify it.
func (s *session) build(chunks []chunk) *schema.Batch {
	bb := schema.NewBatchBuilder(s.c.cfg.Group, s.c.owner)
	if sz := s.sizes.Load(); sz != nil {
		bb.Expect(*sz)
	}
	for _, ch := range chunks {
		bb.Start(ch.p.topic, ch.p.partition, ch.from)
		for _, r := range ch.recs {
			bb.Add(r.d)
		}
	}
	b := bb.Batch()
	sz := b.Sizes()
	s.sizes.Store(&sz)
	return b
}

func batchRows(b *schema.Batch) int {
	n := 0
	for _, t := range b.Tables {
		n += len(t.Rows)
	}
	return n
}

// loadRetry calls Sink.Load until it succeeds, fails as poison or fenced,
// or ctx ends; other errors are retried with capped exponential backoff,
// and readiness reports the failure meanwhile.
func (s *session) loadRetry(ctx context.Context, b *schema.Batch) error {
	for attempt := 1; ; attempt++ {
		began := time.Now()
		err := s.c.sink.Load(ctx, b)
		if s.c.observer != nil {
			s.c.observer.Flushed(b, time.Since(began), err)
		}
		if err == nil || isPoison(err) || isFenced(err) {
			if attempt > 1 {
				s.c.log.Info("sink recovered", "rows", batchRows(b))
			}
			s.c.sinkOK()
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("loading %d records: %w", b.Records, errors.Join(ctx.Err(), err))
		}
		d := backoff(attempt)
		s.c.sinkFailing(err)
		s.c.log.Info("flush failed; retrying", "rows", batchRows(b), "err", err, "dur", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("loading %d records: %w", b.Records, errors.Join(ctx.Err(), err))
		case <-t.C:
		}
	}
}

// commitDirty commits to Kafka the offsets Postgres holds that Kafka may
// lack. A failure is logged and retried with the next flight.
func (s *session) commitDirty(ctx context.Context) {
	// While a commit runs, dirty is not empty, but a commit-only flight
	// would only queue behind it (and hold up the flights after it).
	s.mu.Lock()
	s.committing++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.committing--
		s.kickLocked() // what is still dirty may want a commit-only flight
		s.mu.Unlock()
	}()
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	snap := maps.Clone(s.dirty)
	s.mu.Unlock()
	if len(snap) == 0 {
		return
	}
	err := s.commit(ctx, snap)
	s.mu.Lock()
	if err == nil {
		for k, off := range snap {
			if cur, ok := s.dirty[k]; ok && cur == off {
				delete(s.dirty, k)
			}
		}
	}
	s.commitFailed = err != nil
	s.mu.Unlock()
	if err != nil {
		s.c.log.Info("committing offsets to Kafka failed; retrying with the next flush", "err", err)
	}
}

// commitTimeout bounds one Kafka commit: Kafka's offsets only serve lag
// tools, so a slow broker must not hold up loading; a failed commit is
// retried with the next flush.
const commitTimeout = 10 * time.Second

// commit commits offs synchronously. The caller holds commitMu.
func (s *session) commit(ctx context.Context, offs map[tp]int64) error {
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	m := make(map[string]map[int32]kgo.EpochOffset)
	for k, off := range offs {
		if m[k.topic] == nil {
			m[k.topic] = make(map[int32]kgo.EpochOffset)
		}
		m[k.topic][k.partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	var rerr error
	s.cl.CommitOffsetsSync(ctx, m, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			rerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					rerr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err)
					return
				}
			}
		}
	})
	return rerr
}
