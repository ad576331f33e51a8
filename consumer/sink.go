package consumer

import (
	"context"

	"github.com/segwarehouse/segwarehouse/schema"
)

// Sink is what the consumer needs from the warehouse. *sink.Loader
// implements it; tests use a fake.
type Sink interface {
	// Claim takes ownership of the partitions' rows in the offsets table for
	// owner (creating missing rows) and returns the stored next offset of
	// each partition that has one. A partition absent from the result has
	// no stored offset: the consumer starts it from the configured start
	// position.
	Claim(ctx context.Context, group, owner string, partitions map[string][]int32) (map[string]map[int32]int64, error)
	// Load writes the batch and advances its offsets in one transaction.
	// Errors are classified by the interfaces below.
	//
	// Load must treat b as read-only: its rows share column slices with
	// the decoded records, and after a poison error the consumer builds
	// smaller batches from the same records. ctx ends SHUTDOWN_TIMEOUT
	// after shutdown began; Load must then roll back and return.
	Load(ctx context.Context, b *schema.Batch) error
}

// Preparer is what a Sink may also offer: Prepare does the part of Load
// that needs no data transaction (DDL, casting values) ahead of Load, while
// the flush before it is still in the air, and keeps what it made on
// b.Prepared. Load must work whether or not Prepare ran or failed; the
// consumer ignores Prepare's errors and leaves them to Load.
type Preparer interface {
	Prepare(ctx context.Context, b *schema.Batch) error
}

// The sink's errors say what kind they are through these methods, so that
// the consumer needs no Postgres import.
//
//   - Poison() true: Postgres refused the data itself (a value it cannot
//     store, a row too large): retrying cannot help, so the batch is split
//     until the offending record is isolated and rejected.
//   - Fenced() true: another loader owns a partition or the stored offset
//     moved: the batch is dropped and the partitions re-sought to the
//     offsets Postgres holds.
//   - Anything else (connection lost, Postgres down, serialization failure,
//     a missing privilege) is retried with capped exponential backoff while
//     the partitions wait: an operator's fix makes it go through.
type (
	poisonError interface{ Poison() bool }
	fencedError interface{ Fenced() bool }
)
