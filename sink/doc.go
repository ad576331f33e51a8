// Package sink writes batches of warehouse rows into Postgres, laid out as
// Segment's Postgres destination lays them out (SPEC.md), exactly once.
//
// It owns every pgx call: the connection pool and its TLS policy, DDL
// (schemas, tables, columns, serialised across replicas by an advisory
// lock), binary COPY of event rows with id dedup (the first copy wins), the
// users/accounts merge, the loader's own tables (offsets, rejected,
// discards, loads, merge_state in Config.LoaderSchema) and the
// classification of Postgres errors (classify.go). It imports schema; it
// must not import kgo or consumer.
//
// A flush is one call to Load, and one data transaction: the offsets fence
// first, then the rows, discards, rejected records and a loads row; either
// all of it commits or nothing does.
//
// Every Loader also sweeps the database for other loaders' sessions frozen
// in the middle of a statement inside their flush while others wait for
// their locks, and ends them (stall.go).
//
//	l, err := sink.New(ctx, cfg, log)
//	if err != nil { ... }
//	defer l.Close()
//	next, err := l.Claim(ctx, group, owner, map[string][]int32{"events": {0, 1}})
//	...
//	err = l.Load(ctx, batch)
//	switch {
//	case err == nil:
//	case sink.IsFenced(err): // drop the batch, re-seek to Postgres's offsets
//	case sink.IsPoison(err): // split the batch, reject the offending record
//	default: // retry with backoff; sink.Fix(err) says what an operator must do
//	}
//
// *Loader implements consumer.Sink; cmd wires them.
package sink
