package consumer

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// maxLinks bounds the links of one flush span: a flush holds up to tens of
// thousands of records, and OpenTelemetry's default span limit keeps 128.
const maxLinks = 128

// producerSpan returns the span context a producer wrote into the
// record's headers (traceparent, as kotel and other OpenTelemetry Kafka
// instrumentation write it); invalid when there is none.
func producerSpan(r *kgo.Record) trace.SpanContext {
	if len(r.Headers) == 0 {
		return trace.SpanContext{}
	}
	ctx := otel.GetTextMapPropagator().Extract(context.Background(), kotel.NewRecordCarrier(r))
	return trace.SpanContextFromContext(ctx)
}

// startFlushSpan starts the span of one flush, linked to the producers'
// spans of its records (one span per flush, never one per record). With no
// tracer it returns ctx and a nil span.
func (c *Consumer) startFlushSpan(ctx context.Context, chunks []chunk) (context.Context, trace.Span) {
	if c.tracer == nil {
		return ctx, nil
	}
	var (
		links   []trace.Link
		records int
		seen    = make(map[trace.SpanID]bool)
	)
	for _, ch := range chunks {
		records += len(ch.recs)
		for _, r := range ch.recs {
			if len(links) < maxLinks && r.link.IsValid() && !seen[r.link.SpanID()] {
				seen[r.link.SpanID()] = true
				links = append(links, trace.Link{SpanContext: r.link})
			}
		}
	}
	return c.tracer.Start(ctx, "segwarehouse.flush",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.consumer.group.name", c.cfg.Group),
			attribute.Int("messaging.batch.message_count", records),
			attribute.Int("segwarehouse.partitions", len(chunks)),
		))
}

func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
