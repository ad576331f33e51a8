package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segwarehouse/segwarehouse/internal/sample"
)

const (
	// topic is the benchmark's topic; it is also the source schema the
	// loader writes to.
	topic = "bench"
	// partitions is the topic's partition count (the 6).
	partitions = 6
	// users is how many distinct users the events are drawn from.
	users = 20000
	// producerLinger is the producer's linger: franz-go's default, made
	// explicit because it is part of the stream workload's latency.
	producerLinger = 10 * time.Millisecond
)

// workload is one measurement of the list.
type workload struct {
	name     string        // a, b, c or d
	title    string        // what it is, for the table
	events   int           // events produced before the loader starts (backlog)
	names    int           // distinct track event names
	rate     int           // > 0: events/s produced while the loader runs, for duration
	duration time.Duration // how long the stream runs
	baseline bool          // measure the COPY baseline of its rows too
}

// stream reports whether the workload is produced while the loader runs.
func (w workload) stream() bool { return w.rate > 0 }

// total is the number of events the workload produces.
func (w workload) total() int {
	if w.stream() {
		return int(float64(w.rate) * w.duration.Seconds())
	}
	return w.events
}

// produced describes what was produced.
type produced struct {
	events   int
	bytes    int64
	min, max int // payload bytes
	elapsed  time.Duration
}

// add counts one payload.
func (p *produced) add(size int) {
	if p.events == 0 || size < p.min {
		p.min = size
	}
	p.max = max(p.max, size)
	p.events++
	p.bytes += int64(size)
}

// merge adds q's counts to p.
func (p *produced) merge(q produced) {
	if q.events == 0 {
		return
	}
	if p.events == 0 || q.min < p.min {
		p.min = q.min
	}
	p.max = max(p.max, q.max)
	p.events += q.events
	p.bytes += q.bytes
}

// avg is the mean payload size in bytes.
func (p produced) avg() float64 { return float64(p.bytes) / float64(max(p.events, 1)) }

// generator makes the workload's Kafka records from the sample generator.
type generator struct{ g *sample.Generator }

func newGenerator(seed uint64, names int) generator {
	return generator{sample.New(seed, names, users, sample.DefaultMix)}
}

// next returns one event as a record keyed by its user (so a user's events
// stay in order on one partition). The message carries no receivedAt: the
// loader then takes received_at from the record's timestamp, which the
// producer sets when the record is produced.
func (g generator) next() (*kgo.Record, error) {
	m := g.g.NextMap()
	delete(m, "receivedAt")
	v, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding a sample event: %w", err)
	}
	key, _ := m["userId"].(string)
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: v}, nil
}

// newProducer returns a franz-go producer to the broker at addrs.
func newProducer(addrs []string) (*kgo.Client, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(producerLinger), kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	if err != nil {
		return nil, fmt.Errorf("creating the producer: %w", err)
	}
	return cl, nil
}

// produceBacklog produces n events as fast as the broker takes them, with
// one generator per core, and waits until all are acknowledged.
func produceBacklog(ctx context.Context, cl *kgo.Client, n, names int, seed uint64) (produced, error) {
	start := time.Now()
	workers := runtime.GOMAXPROCS(0)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		total    produced
		firstErr atomic.Pointer[error]
	)
	for i := range workers {
		share := n/workers + btoi(i < n%workers)
		wg.Go(func() {
			p, err := produceN(ctx, cl, newGenerator(seed+uint64(i), names), share, &firstErr)
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
			}
			mu.Lock()
			total.merge(p)
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := cl.Flush(ctx); err != nil {
		return total, fmt.Errorf("flushing the producer: %w", err)
	}
	if err := firstErr.Load(); err != nil {
		return total, fmt.Errorf("producing: %w", *err)
	}
	total.elapsed = time.Since(start)
	return total, nil
}

// produceN produces n events from g without waiting for them; a failed
// produce is stored in firstErr.
func produceN(ctx context.Context, cl *kgo.Client, g generator, n int, firstErr *atomic.Pointer[error]) (produced, error) {
	var p produced
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			firstErr.CompareAndSwap(nil, &err)
		}
	}
	for range n {
		if firstErr.Load() != nil {
			break
		}
		r, err := g.next()
		if err != nil {
			return p, err
		}
		p.add(len(r.Value))
		cl.Produce(ctx, r, done)
	}
	return p, ctx.Err()
}

// produceStream produces rate events per second, spread evenly (a batch
// every 10 ms), for duration, then waits until all are acknowledged.
func produceStream(ctx context.Context, cl *kgo.Client, rate int, duration time.Duration, names int, seed uint64) (produced, error) {
	const tick = 10 * time.Millisecond
	g := newGenerator(seed, names)
	var (
		p        produced
		firstErr atomic.Pointer[error]
	)
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	want := int(float64(rate) * duration.Seconds())
	for p.events < want {
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case now := <-t.C:
			due := min(int(float64(rate)*now.Sub(start).Seconds()), want)
			q, err := produceN(ctx, cl, g, due-p.events, &firstErr)
			p.merge(q)
			if err != nil {
				return p, err
			}
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return p, fmt.Errorf("flushing the producer: %w", err)
	}
	if err := firstErr.Load(); err != nil {
		return p, fmt.Errorf("producing: %w", *err)
	}
	p.elapsed = time.Since(start)
	return p, nil
}

// endOffsets returns the topic's end offset per partition.
func endOffsets(ctx context.Context, cl *kgo.Client) (map[int32]int64, error) {
	listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing the end offsets of %s: %w", topic, err)
	}
	ends := make(map[int32]int64, partitions)
	var errs []error
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("end offset of %s/%d: %w", o.Topic, o.Partition, o.Err))
		}
		ends[o.Partition] = o.Offset
	})
	if len(ends) != partitions {
		errs = append(errs, fmt.Errorf("%s has %d partitions, want %d", topic, len(ends), partitions))
	}
	return ends, errors.Join(errs...)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
