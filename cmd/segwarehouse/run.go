package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/sourcegraph/conc"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/segwarehouse/segwarehouse/consumer"
	"github.com/segwarehouse/segwarehouse/internal/secret"
	"github.com/segwarehouse/segwarehouse/internal/telemetry"
	"github.com/segwarehouse/segwarehouse/schema"
	"github.com/segwarehouse/segwarehouse/sink"
)

// The Postgres loader is the consumer's sink.
var _ consumer.Sink = (*sink.Loader)(nil)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: run takes no arguments (configure it with SEGWH_* variables), got %q", errUsage, args)
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.App.LogLevel, cfg.App.LogFormat)
	return runLoader(ctx, cfg, log, stdout)
}

// processEnv reads one more configuration section from the environment.
func processEnv(spec any) error {
	if err := envconfig.Process(envPrefix, spec); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}

func redactDSN(s string) string { return secret.RedactURL(s) }

// spanExporter, when set (by tests), receives the spans instead of OTLP.
var spanExporter sdktrace.SpanExporter

// runLoader wires decoder, sink and consumer and runs until ctx ends.
func runLoader(ctx context.Context, cfg *config, log *slog.Logger, stdout io.Writer) error {
	log.Info("starting", "version", version, "topics", cfg.Kafka.Topics, "group", cfg.Kafka.Group,
		"database", redactDSN(cfg.Sink.DatabaseURL.Reveal()))
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && cfg.App.MemoryLimitMiB > 0 {
		debug.SetMemoryLimit(cfg.App.MemoryLimitMiB << 20)
		if _, set := os.LookupEnv("GOGC"); !set {
			// With the limit bounding the heap, collect less often below it:
			// the garbage collector took a quarter of the loader's CPU.
			debug.SetGCPercent(300)
		}
	}
	dec, err := schema.NewDecoder(cfg.Schema)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceVersion: version, SpanExporter: spanExporter})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("flushing telemetry", "err", err)
		}
	}()
	var sopts []sink.Option
	if tel.Tracing {
		sopts = append(sopts, sink.WithTracerProvider(otel.GetTracerProvider()))
	}
	snk, err := sink.New(ctx, cfg.Sink, log, sopts...)
	if err != nil {
		return fmt.Errorf("connecting to Postgres: %w", err)
	}
	defer snk.Close()
	rec, err := telemetry.NewRecorder(tel.Meter, snk)
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	opts := []consumer.Option{
		consumer.WithSourceHeader(cfg.Schema.SourceHeader),
		consumer.WithObserver(rec),
		// Bound what franz-go buffers ahead of the decoder: its default
		// allows 50 MiB per fetch, compressed, which JSON inflates 3–5
		// times (a heap profile showed 110 MiB of decompressed batches).
		// 4 MiB still holds thousands of records per fetch.
		consumer.WithKgoOpts(kgo.FetchMaxBytes(4<<20), kgo.FetchMaxPartitionBytes(1<<20)),
	}
	if tel.Tracing {
		opts = append(opts, consumer.WithTracer(tel.Tracer))
		log.Info("tracing flushes over OTLP")
	}
	cons, err := consumer.New(cfg.Kafka, dec, snk, log, opts...)
	if err != nil {
		return err
	}
	rec.Watch(cons)

	var wg conc.WaitGroup
	defer wg.Wait()
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	if cfg.App.HTTPAddr != "" {
		srv, ln, err := listenHTTP(cfg.App.HTTPAddr, cons, tel.Handler, cfg.App.Pprof)
		if err != nil {
			return err
		}
		log.Info("serving health and metrics", "addr", ln.Addr().String())
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server", "err", err)
			}
		})
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	if cfg.App.ProgressEvery > 0 {
		wg.Go(func() { progressLoop(bg, cons, cfg.App.ProgressEvery, stdout) })
	}
	err = cons.Run(ctx)
	stopBG()
	if cfg.App.ProgressEvery > 0 {
		fmt.Fprintln(stdout, summaryLine(cons.Stats(), 0, 0))
	}
	return err
}

// listenHTTP serves /healthz (the process is up), /readyz (the group is
// joined and Postgres takes flushes) and /metrics.
func listenHTTP(addr string, cons *consumer.Consumer, metrics http.Handler, profiles bool) (*http.Server, net.Listener, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	if profiles {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := cons.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listening on SEGWH_HTTP_ADDR %s: %w", addr, err)
	}
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln, nil
}

// progressLoop prints one line every interval: throughput, lag, rejects.
func progressLoop(ctx context.Context, cons *consumer.Consumer, every time.Duration, w io.Writer) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := cons.Stats()
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s := cons.Stats()
			secs := now.Sub(lastAt).Seconds()
			fmt.Fprintln(w, summaryLine(s, float64(s.Messages-last.Messages)/secs, float64(s.Records-last.Records)/secs))
			last, lastAt = s, now
		}
	}
}

// summaryLine renders a stats snapshot: rates (0 for the final summary),
// totals, lag, rejects and the busiest tables.
func summaryLine(s consumer.Stats, eventsPerSec, recordsPerSec float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  ", time.Now().Format("15:04:05"))
	if eventsPerSec > 0 || recordsPerSec > 0 {
		fmt.Fprintf(&b, "%7.0f events/s  ", eventsPerSec)
	}
	var lag int64
	for _, l := range s.Lag {
		lag += l.Lag
	}
	fmt.Fprintf(&b, "loaded %d events in %d flushes  lag %d  rejected %d  discarded %d", s.Messages, s.Batches, lag, s.Rejected, s.Discarded)
	type tr struct {
		name string
		n    int64
	}
	var top []tr
	for k, n := range s.Rows {
		top = append(top, tr{k, n})
	}
	sort.Slice(top, func(i, j int) bool { return top[i].n > top[j].n || top[i].n == top[j].n && top[i].name < top[j].name })
	if len(top) > 0 {
		b.WriteString("  rows:")
		for i, t := range top {
			if i == 5 {
				fmt.Fprintf(&b, " +%d tables", len(top)-5)
				break
			}
			fmt.Fprintf(&b, " %s=%d", t.name, t.n)
		}
	}
	return b.String()
}
