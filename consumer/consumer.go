package consumer

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/segwarehouse/segwarehouse/schema"
)

// Decoder turns one Kafka record into rows. *schema.Decoder implements it.
// Decode is called from several goroutines at once and must not keep rec.
type Decoder interface {
	Decode(rec *schema.Record) *schema.Decoded
}

// Option changes how New builds a Consumer. Options exist for wiring and
// tests; production settings live in Config.
type Option func(*options)

type options struct {
	kopts        []kgo.Opt
	owner        string
	now          func() time.Time
	sourceHeader string
	tracer       trace.Tracer
	observer     Observer
	topicGone    time.Duration // refetchTopicGone unless a test shortens it
}

// Observer is told about every Sink.Load the consumer makes; cmd turns the
// calls into metrics. Flushed runs on the flusher goroutine and must be
// quick; it must not modify the batch.
type Observer interface {
	// Flushed reports one Load: the batch, how long Load took and its
	// result (nil: committed in Postgres).
	Flushed(b *schema.Batch, dur time.Duration, err error)
}

// WithTracer traces every flush with tr: one span per flush, linked to the
// producers' span contexts found in the records' headers (W3C trace
// context, as franz-go's kotel plugin writes it), parent of the sink's
// spans. Default: no tracing.
func WithTracer(tr trace.Tracer) Option { return func(o *options) { o.tracer = tr } }

// WithObserver reports every Load to obs. Default: none.
func WithObserver(obs Observer) Option { return func(o *options) { o.observer = obs } }

// WithKgoOpts appends client options after the ones New derives from
// Config, so they win (tests shorten heartbeats; cmd may add kotel hooks).
func WithKgoOpts(opts ...kgo.Opt) Option {
	return func(o *options) { o.kopts = append(o.kopts, opts...) }
}

// WithOwner sets the owner token that fences this consumer's rows in the
// offsets table. Default: a random id per Consumer. Two running consumers
// must never share one.
func WithOwner(owner string) Option { return func(o *options) { o.owner = owner } }

// WithClock sets the clock that relative START_FROM values ("2 days ago")
// count back from. Default time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithSourceHeader names the Kafka header whose value fills
// schema.Record.SourceHeader; cmd passes schema.Config.SourceHeader so that
// the header is configured in one place (SEGWH_SOURCE_HEADER). Default:
// none.
func WithSourceHeader(name string) Option { return func(o *options) { o.sourceHeader = name } }

// Consumer loads records from a Kafka consumer group into a Sink exactly
// once. Stats and Ready are safe to call concurrently with Run.
type Consumer struct {
	cfg          Config
	dec          Decoder
	sink         Sink
	log          *slog.Logger
	owner        string
	start        kgo.Offset // where partitions without a stored offset start
	clientOpts   []kgo.Opt
	extra        []kgo.Opt
	sourceHeader string
	tracer       trace.Tracer // nil: no tracing
	observer     Observer     // nil: none
	workers      int
	topicGone    time.Duration // how long a topic Kafka does not know takes to count as deleted

	running atomic.Bool

	// refetch's client, made on first use and closed when Run returns.
	refetchMu      sync.Mutex
	refetchCl      *kgo.Client
	refetchClients atomic.Int64 // clients made, for tests

	n struct {
		records, messages, batches, rejected, discarded atomic.Int64
		retries, rebalances                             atomic.Int64
		lastFlush                                       atomic.Int64 // ns
	}

	mu          sync.Mutex // guards the fields below
	rows        map[string]int64
	sess        *session
	joined      bool
	failSince   time.Time
	failErr     error
	failures    int
	flightStart time.Time
}

// New checks cfg and builds a Consumer. It does not connect: Run does.
func New(cfg Config, dec Decoder, sink Sink, log *slog.Logger, opts ...Option) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if dec == nil || sink == nil || log == nil {
		return nil, errors.New("consumer.New: decoder, sink and logger are required")
	}
	o := options{now: time.Now, topicGone: refetchTopicGone}
	for _, opt := range opts {
		opt(&o)
	}
	if o.owner == "" {
		var b [12]byte
		if _, err := crand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("generating the owner token: %w", err)
		}
		o.owner = hex.EncodeToString(b[:])
	}
	start, err := parseStartFrom(cfg.StartFrom, o.now())
	if err != nil {
		return nil, fmt.Errorf("SEGWH_START_FROM: %w", err)
	}
	copts, err := cfg.ClientOpts()
	if err != nil {
		return nil, err
	}
	workers := cfg.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	return &Consumer{
		cfg:          cfg,
		dec:          dec,
		sink:         sink,
		log:          log,
		owner:        o.owner,
		start:        start,
		clientOpts:   copts,
		extra:        o.kopts,
		sourceHeader: o.sourceHeader,
		tracer:       o.tracer,
		observer:     o.observer,
		workers:      workers,
		topicGone:    o.topicGone,
		rows:         make(map[string]int64),
	}, nil
}

// Owner is the token this consumer claims partitions with.
func (c *Consumer) Owner() string { return c.owner }

// Run consumes until ctx is cancelled, then stops polling, lets the flush
// in flight finish, flushes what is pending, commits and leaves the group,
// all within Config.ShutdownTimeout, and returns nil. It returns an error
// only when it cannot go on (the Kafka client cannot be built, a record
// can be neither loaded nor rejected). A fenced flush does not end Run: the
// Kafka session is rebuilt and every partition restarts from Postgres.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("consumer: Run is already running")
	}
	defer c.running.Store(false)
	defer c.closeRefetch()

	// flushCtx bounds Load and commits: it outlives ctx by ShutdownTimeout
	// so that a cancelled ctx never aborts a transaction half way.
	flushCtx, cancelFlush := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelFlush()
	var deadline atomic.Pointer[time.Timer]
	stop := context.AfterFunc(ctx, func() {
		deadline.Store(time.AfterFunc(c.cfg.ShutdownTimeout, cancelFlush))
	})
	defer func() {
		stop()
		if t := deadline.Load(); t != nil {
			t.Stop()
		}
	}()

	fences := 0
	for {
		s, err := c.newSession(flushCtx)
		if err != nil {
			return err
		}
		err = s.run(ctx)
		if !isFenced(err) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if s.loaded.Load() {
			fences = 0
		}
		fences++
		wait := time.Duration(0)
		if fences > 1 {
			wait = backoff(fences - 1)
		}
		c.log.Info("flush fenced: another loader owns a partition, or the offsets table went back; rejoining the group and restarting every partition from Postgres", "err", err, "dur", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Stats is a snapshot of the consumer's counters since New.
type Stats struct {
	Records    int64            // Kafka records polled and decoded
	Messages   int64            // messages in loaded batches
	Batches    int64            // successful Sink.Load calls (a split flush counts each part)
	Rows       map[string]int64 // rows loaded per table ("schema.table"), after in-batch dedup
	Rejected   int64            // rejected records/messages loaded
	Discarded  int64            // discarded values loaded
	Retries    int64            // failed Load or Claim attempts that were retried
	Rebalances int64            // assignments received (one per group generation)
	Lag        []PartitionLag   // per owned partition, sorted
	LastFlush  time.Duration    // duration of the last successful flush, retries included
}

// PartitionLag is how far Postgres is behind a partition's high watermark,
// as of the last fetch from it. Partitions not fetched yet are absent.
type PartitionLag struct {
	Topic     string
	Partition int32
	Lag       int64
}

// Stats returns a snapshot of the counters and the lag of the partitions
// this consumer owns.
func (c *Consumer) Stats() Stats {
	st := Stats{
		Records:    c.n.records.Load(),
		Messages:   c.n.messages.Load(),
		Batches:    c.n.batches.Load(),
		Rejected:   c.n.rejected.Load(),
		Discarded:  c.n.discarded.Load(),
		Retries:    c.n.retries.Load(),
		Rebalances: c.n.rebalances.Load(),
		LastFlush:  time.Duration(c.n.lastFlush.Load()),
	}
	c.mu.Lock()
	st.Rows = maps.Clone(c.rows)
	s := c.sess
	c.mu.Unlock()
	if s != nil {
		st.Lag = s.lag()
	}
	return st
}

// Ready reports whether the consumer is doing its job: nil when it is in
// the group and the sink is neither failing nor stuck in one flush;
// otherwise an error saying why (for /readyz).
func (c *Consumer) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !c.running.Load():
		return errors.New("consumer is not running")
	case !c.failSince.IsZero():
		return fmt.Errorf("sink failing since %s (%d failed attempts, retrying): %w",
			c.failSince.UTC().Format(time.RFC3339), c.failures, c.failErr)
	case !c.joined:
		return fmt.Errorf("not a member of consumer group %q yet", c.cfg.Group)
	case !c.flightStart.IsZero() && time.Since(c.flightStart) > c.cfg.FlushStuckAfter:
		return fmt.Errorf("one flush has been running for %s (SEGWH_FLUSH_STUCK_AFTER=%s)",
			time.Since(c.flightStart).Round(time.Second), c.cfg.FlushStuckAfter)
	}
	return nil
}

func (c *Consumer) setSession(s *session) {
	c.mu.Lock()
	c.sess = s
	c.joined = false
	c.mu.Unlock()
}

func (c *Consumer) setJoined(joined bool) {
	c.mu.Lock()
	c.joined = joined
	c.mu.Unlock()
}

func (c *Consumer) sinkFailing(err error) {
	c.n.retries.Add(1)
	c.mu.Lock()
	if c.failSince.IsZero() {
		c.failSince = time.Now()
	}
	c.failErr = err
	c.failures++
	c.mu.Unlock()
}

func (c *Consumer) sinkOK() {
	c.mu.Lock()
	c.failSince, c.failErr, c.failures = time.Time{}, nil, 0
	c.mu.Unlock()
}

func (c *Consumer) flightBegan(t time.Time) {
	c.mu.Lock()
	c.flightStart = t
	c.mu.Unlock()
}

// loaded counts a batch the sink committed.
func (c *Consumer) loaded(b *schema.Batch) {
	c.n.batches.Add(1)
	c.n.messages.Add(int64(b.Messages))
	c.n.rejected.Add(int64(len(b.Rejected)))
	c.n.discarded.Add(int64(len(b.Discards)))
	c.mu.Lock()
	for _, t := range b.Tables {
		c.rows[t.Table.String()] += int64(len(t.Rows))
	}
	c.mu.Unlock()
}

// backoff is the wait before retry attempt n (1-based): 100ms doubling to
// 30s, with jitter in [d/2, d] so that replicas do not retry in step.
func backoff(n int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	d = min(d, 30*time.Second)
	return d/2 + rand.N(d/2+1)
}

func isPoison(err error) bool {
	var p poisonError
	return errors.As(err, &p) && p.Poison()
}

func isFenced(err error) bool {
	var f fencedError
	return errors.As(err, &f) && f.Fenced()
}

// kgoLogger passes the Kafka client's warnings and errors to the injected
// logger; its Info lines (every heartbeat and join) would drown ours.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelWarn
	switch level {
	case kgo.LogLevelError:
		lvl = slog.LevelError
	case kgo.LogLevelInfo:
		lvl = slog.LevelInfo
	case kgo.LogLevelDebug:
		lvl = slog.LevelDebug
	}
	k.l.Log(context.Background(), lvl, "kafka client: "+msg, keyvals...)
}

func sortedLag(m map[tp]int64) []PartitionLag {
	out := make([]PartitionLag, 0, len(m))
	for k, v := range m {
		out = append(out, PartitionLag{Topic: k.topic, Partition: k.partition, Lag: v})
	}
	slices.SortFunc(out, func(a, b PartitionLag) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition - b.Partition)
	})
	return out
}
