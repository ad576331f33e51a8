package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/sourcegraph/conc"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segwarehouse/segwarehouse/internal/sample"
)

// devTopics are the embedded broker's topics: one per sample source.
var devTopics = []string{"web", "ios", "server"}

const devPartitions = 6

// devConfig is what only `segwarehouse dev` reads.
type devConfig struct {
	// Rate is the sample events produced per second. Default 1000.
	Rate int `envconfig:"DEV_RATE" default:"1000" desc:"dev: sample events produced per second (0: none)"`
	// Events stops producing after this many events (0: never). Default 0.
	Events int `envconfig:"DEV_EVENTS" default:"0" desc:"dev: stop producing after this many events; 0 means never"`
	// BrokerPort is the embedded broker's port. Default 9092.
	BrokerPort int `envconfig:"DEV_BROKER_PORT" default:"9092" desc:"dev: port of the embedded Kafka broker on 127.0.0.1"`
	// Duration stops the whole dev run after this long (0: run until
	// Ctrl-C). Default 0.
	Duration time.Duration `envconfig:"DEV_DURATION" default:"0" desc:"dev: stop after this long; 0 means run until Ctrl-C"`
}

// cmdDev runs the loader against an embedded kfake broker on 127.0.0.1,
// fed with sample events, into a local Postgres.
func cmdDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var dc devConfig
	if err := processEnv(&dc); err != nil {
		return err
	}
	log := newLogger(stderr, envOr("SEGWH_LOG_LEVEL", "info"), envOr("SEGWH_LOG_FORMAT", "text"))
	if dc.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dc.Duration)
		defer cancel()
	}

	cluster, err := kfake.NewCluster(kfake.Ports(dc.BrokerPort), kfake.SeedTopics(devPartitions, devTopics...))
	if err != nil {
		return fmt.Errorf("starting the embedded Kafka broker on 127.0.0.1:%d: %w (is another broker using the port? set SEGWH_DEV_BROKER_PORT)", dc.BrokerPort, err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	fmt.Fprintf(stdout, "embedded Kafka broker on %s, topics %v with %d partitions each\n", brokers[0], devTopics, devPartitions)
	fmt.Fprintf(stdout, "  produce your own: kcat -P -b %s -t web <<< '{\"type\":\"track\",\"userId\":\"u1\",\"event\":\"Hello\"}'\n", brokers[0])

	dsn, stopPG, err := devDatabase(ctx, log)
	if err != nil {
		return err
	}
	if stopPG != nil {
		defer stopPG()
	}
	setDefaultEnv("SEGWH_DATABASE_URL", dsn)
	setDefaultEnv("SEGWH_KAFKA_BROKERS", brokers[0])
	setDefaultEnv("SEGWH_KAFKA_TOPICS", "web,ios,server")
	setDefaultEnv("SEGWH_KAFKA_GROUP", "segwarehouse-dev")
	setDefaultEnv("SEGWH_PROGRESS_EVERY", "5s")
	setDefaultEnv("SEGWH_HTTP_ADDR", "127.0.0.1:9090")
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "loading into %s (schemas web, ios, server; the loader's own tables in %s)\n", redactDSN(cfg.Sink.DatabaseURL.Reveal()), cfg.Sink.LoaderSchema)
	fmt.Fprintf(stdout, "  look: psql %q -c 'select event, count(*) from web.tracks group by 1'\n", redactDSN(cfg.Sink.DatabaseURL.Reveal()))

	var wg conc.WaitGroup
	defer wg.Wait()
	prodCtx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	if dc.Rate > 0 {
		wg.Go(func() {
			if err := produceSamples(prodCtx, brokers, dc.Rate, dc.Events, log); err != nil && prodCtx.Err() == nil {
				log.Error("sample producer stopped", "err", err)
			}
		})
	}
	err = runLoader(ctx, cfg, log, stdout)
	stopProducing()
	return err
}

// produceSamples sends realistic events to the dev topics at rate events/s:
// analytics.js-shaped events to web, mobile ones to ios, server-library
// ones (some as batch envelopes) to server, and now and then a bad record
// so that the rejected table has something to show.
func produceSamples(ctx context.Context, brokers []string, rate, limit int, log *slog.Logger) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	gens := map[string]*sample.Generator{
		"web":    sample.New(1, 30, 5000, sample.Mix{Page: 25, Identify: 10, Alias: 2}),
		"ios":    sample.New(2, 20, 3000, sample.Mix{Screen: 30, Identify: 8}),
		"server": sample.New(3, 10, 2000, sample.Mix{Identify: 30, Group: 20}),
	}
	const tick = 100 * time.Millisecond
	perTick := max(rate/10, 1)
	t := time.NewTicker(tick)
	defer t.Stop()
	sent := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		recs := make([]*kgo.Record, 0, perTick)
		for i := 0; i < perTick && (limit == 0 || sent < limit); i++ {
			sent++
			topic := devTopics[sent%len(devTopics)]
			m := gens[topic].NextMap()
			var value []byte
			switch {
			case sent%997 == 0:
				value = []byte(`{"type":"track","event":"Truncated`) // bad JSON: lands in rejected
			case topic == "server" && sent%5 == 0:
				value, _ = json.Marshal(map[string]any{"batch": []any{m, gens[topic].NextMap()}, "sentAt": time.Now().UTC().Format(time.RFC3339Nano),
					"context": map[string]any{"library": map[string]any{"name": "analytics-go", "version": "3.3.0"}}})
			default:
				m["receivedAt"] = time.Now().UTC().Format(time.RFC3339Nano)
				value, _ = json.Marshal(m)
			}
			key, _ := m["userId"].(string)
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(key), Value: value})
		}
		if len(recs) == 0 {
			return nil
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("producing sample events", "err", err)
		}
	}
}

func setDefaultEnv(k, v string) {
	if _, ok := os.LookupEnv(k); !ok {
		os.Setenv(k, v)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
