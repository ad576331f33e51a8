package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
)

// TestFlushSpanTree runs the loader in process with an in-memory span
// exporter: each flush is one span, linked to the producer's span from the
// record headers, parent of the sink's DDL, fence, insert/COPY, merge and
// commit spans.
func TestFlushSpanTree(t *testing.T) {
	dsn := pgtest.NewDB(t)
	cluster, err := kfake.NewCluster(kfake.Ports(0), kfake.SeedTopics(1, "web"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	for k, v := range map[string]string{
		"SEGWH_KAFKA_BROKERS": cluster.ListenAddrs()[0], "SEGWH_KAFKA_TOPICS": "web", "SEGWH_DATABASE_URL": dsn,
		"SEGWH_HTTP_ADDR": "", "SEGWH_FLUSH_INTERVAL": "100ms",
	} {
		t.Setenv(k, v)
	}
	exp := tracetest.NewInMemoryExporter()
	spanExporter = keepOnShutdown{exp}
	defer func() { spanExporter = nil }()

	producer := trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled}
	traceparent := "00-" + producer.TraceID.String() + "-" + producer.SpanID.String() + "-01"
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = cl.ProduceSync(ctx,
		&kgo.Record{Topic: "web", Value: []byte(`{"type":"track","messageId":"t1","userId":"u1","event":"Traced"}`),
			Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(traceparent)}}},
		&kgo.Record{Topic: "web", Value: []byte(`{"type":"identify","messageId":"t2","userId":"u1","traits":{"a":1}}`)},
	).FirstErr()
	if err != nil {
		t.Fatal(err)
	}

	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runLoader(runCtx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), &bytes.Buffer{})
	}()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if rows := pgtest.Query(t, dsn, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'web' AND table_name = 'users'`); rows[0][0].(int64) == 1 {
			if n := pgtest.Query(t, dsn, `SELECT count(*) FROM web.users`); n[0][0].(int64) == 1 {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	spans := exp.GetSpans()
	var flush *tracetest.SpanStub
	for i := range spans {
		if spans[i].Name == "segwarehouse.flush" && len(spans[i].Links) > 0 {
			flush = &spans[i]
		}
	}
	if flush == nil {
		t.Fatalf("no flush span with links among %d spans", len(spans))
	}
	if l := flush.Links[0].SpanContext; l.TraceID() != producer.TraceID || l.SpanID() != producer.SpanID {
		t.Errorf("flush links to %s/%s, want the producer's span", l.TraceID(), l.SpanID())
	}
	children := map[string]int{}
	for _, s := range spans {
		if s.Parent.SpanID() == flush.SpanContext.SpanID() {
			children[s.Name]++
		}
	}
	for _, want := range []string{"segwarehouse.ddl", "segwarehouse.fence", "segwarehouse.copy_small", "segwarehouse.merge", "segwarehouse.commit"} {
		if children[want] == 0 {
			t.Errorf("the flush span has no %s child (children: %v)", want, children)
		}
	}
	// Small tables (tracks, traced, identifies) share one copy_small
	// span; a table of more than 64 rows gets a segwarehouse.copy span.
	for _, sp := range spans {
		if sp.Name != "segwarehouse.copy_small" || sp.Parent.SpanID() != flush.SpanContext.SpanID() {
			continue
		}
		for _, a := range sp.Attributes {
			if a.Key == "segwarehouse.tables" && a.Value.AsInt64() != 3 {
				t.Errorf("the copy_small span covers %d tables, want 3", a.Value.AsInt64())
			}
		}
	}
	// otelpgx: statement spans under the sink's spans.
	stmts := 0
	for _, s := range spans {
		if strings.HasPrefix(s.Name, "query") || strings.HasPrefix(s.Name, "copy_from") || strings.HasPrefix(s.Name, "batch") {
			stmts++
		}
	}
	if stmts == 0 {
		t.Errorf("no pgx statement spans")
	}
}

// keepOnShutdown keeps the spans when the loader shuts its exporter down
// (the in-memory exporter forgets them).
type keepOnShutdown struct{ *tracetest.InMemoryExporter }

func (keepOnShutdown) Shutdown(context.Context) error { return nil }
