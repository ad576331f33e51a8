package telemetry

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/segwarehouse/segwarehouse/consumer"
	"github.com/segwarehouse/segwarehouse/schema"
)

// StatsSource is what the recorder reads on each scrape.
type StatsSource interface {
	Stats() consumer.Stats
	Ready() error
}

// Recorder turns flushes and consumer statistics into the metrics listed in
// Metrics. It implements consumer.Observer.
type Recorder struct {
	records, messages, rows, rejected, discarded, flushes metric.Int64Counter
	duration                                              metric.Float64Histogram
	src                                                   atomic.Pointer[StatsSource]
}

// Watch sets the source read at each collection (the consumer, which is
// built after the recorder it reports to).
func (r *Recorder) Watch(src StatsSource) { r.src.Store(&src) }

var _ consumer.Observer = (*Recorder)(nil)

// LoaderStats is what the recorder reads from the sink at every collection.
type LoaderStats interface {
	DDLStats() map[string]int64  // DDL statements run, by kind
	StalledSessionsEnded() int64 // stalled loader sessions ended
}

// NewRecorder registers the instruments on m. The source set with Watch is
// read at every collection for lag, retries, rebalances and readiness;
// loader, when not nil, for DDL statements and stalled sessions ended.
func NewRecorder(m metric.Meter, loader LoaderStats) (*Recorder, error) {
	var (
		r    Recorder
		errs []error
	)
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	r.records = counter("segwarehouse.records.consumed", "{record}", "Kafka records taken into flushes that committed.")
	r.messages = counter("segwarehouse.messages.loaded", "{message}", "Segment messages loaded (a batch envelope holds several).")
	r.rows = counter("segwarehouse.rows.loaded", "{row}", "Rows sent to each warehouse table (before the database drops producer duplicates).")
	r.rejected = counter("segwarehouse.rejected", "{record}", "Records or messages written to the rejected table, by reason class.")
	r.discarded = counter("segwarehouse.discarded", "{value}", "Values written to the discards table, by reason class.")
	r.flushes = counter("segwarehouse.flushes", "{flush}", "Flush attempts by result: ok, retry, fenced, poison.")
	var err error
	r.duration, err = m.Float64Histogram("segwarehouse.flush.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of a committed flush's Postgres transaction (DDL, COPY, merges, commit)."),
		metric.WithExplicitBucketBoundaries(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	errs = append(errs, err)

	lag, err := m.Int64ObservableGauge("segwarehouse.consumer.lag", metric.WithUnit("{record}"),
		metric.WithDescription("Records in Kafka not yet loaded: high watermark minus the offset stored in Postgres."))
	errs = append(errs, err)
	retries, err := m.Int64ObservableCounter("segwarehouse.retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Flush retries after a retryable Postgres error."))
	errs = append(errs, err)
	rebalances, err := m.Int64ObservableCounter("segwarehouse.rebalances", metric.WithUnit("{rebalance}"),
		metric.WithDescription("Partition assignments and revocations seen by this member."))
	errs = append(errs, err)
	ready, err := m.Int64ObservableGauge("segwarehouse.ready", metric.WithDescription("1 when /readyz answers ready, else 0."))
	errs = append(errs, err)
	ddlStmts, err := m.Int64ObservableCounter("segwarehouse.ddl.statements", metric.WithUnit("{statement}"),
		metric.WithDescription("DDL statements run: create_schema, create_table, add_column."))
	errs = append(errs, err)
	stalls, err := m.Int64ObservableCounter("segwarehouse.stalled_sessions.ended", metric.WithUnit("{session}"),
		metric.WithDescription("Loader sessions stalled in the middle of a statement inside their flush, which other sessions waited for, that this pod ended."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		p := r.src.Load()
		if p == nil {
			return nil
		}
		src := *p
		st := src.Stats()
		for _, l := range st.Lag {
			o.ObserveInt64(lag, l.Lag, metric.WithAttributes(attribute.String("topic", l.Topic), attribute.String("partition", strconv.Itoa(int(l.Partition)))))
		}
		o.ObserveInt64(retries, st.Retries)
		o.ObserveInt64(rebalances, st.Rebalances)
		var up int64
		if src.Ready() == nil {
			up = 1
		}
		o.ObserveInt64(ready, up)
		if loader != nil {
			for kind, n := range loader.DDLStats() {
				o.ObserveInt64(ddlStmts, n, metric.WithAttributes(attribute.String("kind", kind)))
			}
			o.ObserveInt64(stalls, loader.StalledSessionsEnded())
		}
		return nil
	}, lag, retries, rebalances, ready, ddlStmts, stalls)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Flushed records one Load.
func (r *Recorder) Flushed(b *schema.Batch, dur time.Duration, err error) {
	ctx := context.Background()
	if err != nil {
		r.flushes.Add(ctx, 1, metric.WithAttributes(attribute.String("result", resultOf(err))))
		return
	}
	r.flushes.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "ok")))
	r.duration.Record(ctx, dur.Seconds())
	r.records.Add(ctx, int64(b.Records))
	r.messages.Add(ctx, int64(b.Messages))
	for _, t := range b.Tables {
		r.rows.Add(ctx, int64(len(t.Rows)), metric.WithAttributes(attribute.String("schema", t.Table.Schema), attribute.String("table", t.Table.Table)))
	}
	rej := map[string]int64{}
	for _, x := range b.Rejected {
		rej[codeOr(x.Code, "postgres")]++
	}
	for code, n := range rej {
		r.rejected.Add(ctx, n, metric.WithAttributes(attribute.String("reason", code)))
	}
	dis := map[string]int64{}
	for _, x := range b.Discards {
		dis[codeOr(x.Code, "other")]++
	}
	for code, n := range dis {
		r.discarded.Add(ctx, n, metric.WithAttributes(attribute.String("reason", code)))
	}
}

func codeOr(code, dflt string) string {
	if code == "" {
		return dflt
	}
	return code
}

func resultOf(err error) string {
	var p interface{ Poison() bool }
	var f interface{ Fenced() bool }
	switch {
	case errors.As(err, &f) && f.Fenced():
		return "fenced"
	case errors.As(err, &p) && p.Poison():
		return "poison"
	}
	return "retry"
}
