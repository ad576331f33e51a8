package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// loadsSummary sums up the loader's loads history: one row per flush.
type loadsSummary struct {
	flushes            int
	p50, p99           float64 // flush duration, ms (from its start to its loads row, before COMMIT)
	records, messages  int64
	rejected, discards int64
	rowsWritten        int64 // rows the flushes wrote, merged users/accounts rows counted per flush
}

// latencyStats are a stream's produce-to-committed latencies, seconds.
type latencyStats struct {
	// p50, p99 of uuid_ts − received_at over the tracks rows: uuid_ts is
	// the flush transaction's start (Postgres now()).
	p50, p99 float64
	// commitP50, commitP99 of the flush's end (its loads row's started_at
	// + duration_ms, just before COMMIT) − received_at.
	commitP50, commitP99 float64
}

// query reads what the loader wrote: its loads history, the rows of the
// source schema and, for a stream, the latencies.
func (r *loaderRun) query(ctx context.Context, c *pgx.Conn, w workload) error {
	var err error
	if r.load, err = readLoads(ctx, c); err != nil {
		return err
	}
	if r.tables, r.rows, err = countRows(ctx, c, topic); err != nil {
		return err
	}
	if w.stream() {
		if r.latency, err = readLatency(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// readLoads sums up _segwarehouse.loads.
func readLoads(ctx context.Context, c *pgx.Conn) (s loadsSummary, err error) {
	loads := pgx.Identifier{loaderSchema, "loads"}.Sanitize()
	err = c.QueryRow(ctx, `SELECT count(*),
		coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), 0),
		coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms), 0),
		coalesce(sum(records), 0), coalesce(sum(messages), 0), coalesce(sum(rejected), 0), coalesce(sum(discards), 0),
		coalesce((SELECT sum(v::bigint) FROM `+loads+` l, jsonb_each_text(l.rows) AS r(k, v) WHERE l.consumer_group = $1), 0)
		FROM `+loads+` WHERE consumer_group = $1`, group).
		Scan(&s.flushes, &s.p50, &s.p99, &s.records, &s.messages, &s.rejected, &s.discards, &s.rowsWritten)
	if err != nil {
		return s, fmt.Errorf("reading the loads history: %w", err)
	}
	return s, nil
}

// sourceTables lists the tables of schema, by name.
func sourceTables(ctx context.Context, c *pgx.Conn, schema string) ([]string, error) {
	rows, err := c.Query(ctx, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1`, schema)
	if err != nil {
		return nil, fmt.Errorf("listing the tables of %s: %w", schema, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing the tables of %s: %w", schema, err)
	}
	return names, nil
}

// countRows returns how many tables schema has and how many rows they
// hold, counted in one round trip.
func countRows(ctx context.Context, c *pgx.Conn, schema string) (tables int, rows int64, err error) {
	names, err := sourceTables(ctx, c, schema)
	if err != nil {
		return 0, 0, err
	}
	b := &pgx.Batch{}
	for _, t := range names {
		b.Queue(`SELECT count(*) FROM ` + pgx.Identifier{schema, t}.Sanitize())
	}
	br := c.SendBatch(ctx, b)
	defer br.Close()
	for _, t := range names {
		var n int64
		if err := br.QueryRow().Scan(&n); err != nil {
			return 0, 0, fmt.Errorf("counting the rows of %s.%s: %w", schema, t, err)
		}
		rows += n
	}
	return len(names), rows, br.Close()
}

// readLatency computes a stream's produce-to-committed latencies over the
// rows of the source's tracks table. received_at is the Kafka record's
// timestamp (the messages carry no receivedAt), set when the benchmark
// produced the record.
func readLatency(ctx context.Context, c *pgx.Conn) (*latencyStats, error) {
	tracks := pgx.Identifier{topic, "tracks"}.Sanitize()
	loads := pgx.Identifier{loaderSchema, "loads"}.Sanitize()
	var toStart, toEnd []float64
	err := c.QueryRow(ctx, `SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP
		(ORDER BY extract(epoch FROM uuid_ts - received_at)) FROM `+tracks).Scan(&toStart)
	if err != nil {
		return nil, fmt.Errorf("computing the produce-to-committed latency: %w", err)
	}
	err = c.QueryRow(ctx, `SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP
		(ORDER BY extract(epoch FROM l.started_at + l.duration_ms * interval '1 ms' - t.received_at))
		FROM `+tracks+` t JOIN `+loads+` l ON l.uuid_ts = t.uuid_ts AND l.consumer_group = $1`, group).Scan(&toEnd)
	if err != nil {
		return nil, fmt.Errorf("computing the produce-to-flush-end latency: %w", err)
	}
	if len(toStart) != 2 || len(toEnd) != 2 {
		return nil, fmt.Errorf("computing the latency: no tracks rows")
	}
	l := latencyStats{p50: toStart[0], p99: toStart[1], commitP50: toEnd[0], commitP99: toEnd[1]}
	return &l, nil
}
