// Package consumer owns every franz-go call of segwarehouse: group
// membership, polling, rebalance callbacks, offset commits and the decode
// worker pool. It must not import sink or pgx: it declares the Sink it
// needs (sink.go) and cmd plugs *sink.Loader in.
//
// A record's trip: Run polls a bounded batch (PollRecords with
// BlockRebalanceOnPoll), decodes it in parallel (one conc pool per poll,
// results by index so each partition keeps its order) and appends the
// decoded records to their partition's pending list. When the pending
// records reach FLUSH_ROWS rows, FLUSH_BYTES bytes or FLUSH_INTERVAL of
// age, or hold a tenth of a full flush when nothing new has come for
// FLUSH_QUIET, a flusher goroutine builds one schema.Batch and calls Sink.Load
// while the poll loop goes on polling and decoding the next one (at most
// one flush in the air and one being filled; polling stops while the next
// one is full).
//
// Exactly once: Postgres holds the offsets. On assignment each partition
// is claimed in Postgres (Sink.Claim) and starts at the offset stored
// there (kgo.AdjustFetchOffsetsFn, which runs before fetching starts), or
// at START_FROM when none is stored. Every batch names, per partition, the
// offset Postgres must hold before it (From) and the owner token, so the
// sink rejects a batch from a consumer that lost the partition (Fenced).
// Kafka's committed offsets follow Postgres's, only after Load succeeded,
// for lag tools.
//
// Usage:
//
//	c, err := consumer.New(cfg, decoder, loader, log, consumer.WithSourceHeader(scfg.SourceHeader))
//	if err != nil { ... }
//	err = c.Run(ctx) // returns nil after ctx is cancelled and the last flush landed
package consumer
