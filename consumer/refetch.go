package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segwarehouse/segwarehouse/schema"
)

// errRecordGone is why a rejection may lack the record's raw value: Kafka
// no longer holds the record (retention or DeleteRecords removed it after
// it was polled).
var errRecordGone = errors.New("the record is no longer in Kafka (retention or a deletion removed it after it was read)")

// refetch reads the value of the record at pos from Kafka again, for the
// rejection of a record the sink refused. Records' bytes are not kept
// after decoding: they would hold every fetched batch in memory until its
// flush commits, for a need that only poison records have.
//
// A client of its own reads the one partition from pos, read-committed as
// the group's client does. Fetch errors are retried (kgo backs off) until
// ctx ends; errRecordGone when the first record Kafka returns is past pos.
func (c *Consumer) refetch(ctx context.Context, pos schema.Pos) ([]byte, error) {
	opts := slices.Concat(c.clientOpts, c.extra, []kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			pos.Topic: {pos.Partition: kgo.NewOffset().At(pos.Offset)},
		}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Out of range means the record was deleted: restart at the log
		// start, whose first record is then past pos.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.WithLogger(kgoLogger{c.log}),
	})
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating a Kafka client to read %s/%d offset %d again: %w", pos.Topic, pos.Partition, pos.Offset, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var lastErr error
	for {
		pctx, cancel := context.WithTimeout(ctx, refetchCheck)
		fs := cl.PollRecords(pctx, 1)
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s/%d offset %d again from Kafka: %w", pos.Topic, pos.Partition, pos.Offset, errors.Join(err, lastErr))
		}
		// The client reads only pos's partition, from pos.
		if r := fs.Records(); len(r) > 0 {
			if r[0].Offset != pos.Offset {
				return nil, errRecordGone
			}
			return r[0].Value, nil
		}
		fs.EachError(func(_ string, _ int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) {
				return
			}
			if lastErr == nil || err.Error() != lastErr.Error() {
				c.log.Info("reading a refused record again from Kafka for its rejection", "topic", pos.Topic, "partition", pos.Partition, "offset", pos.Offset, "err", err)
			}
			lastErr = err
		})
		// Nothing came: when the record and all after it were deleted,
		// nothing ever will.
		starts, err := adm.ListStartOffsets(ctx, pos.Topic)
		if err == nil {
			if o, ok := starts.Lookup(pos.Topic, pos.Partition); ok && o.Err == nil && o.Offset > pos.Offset {
				return nil, errRecordGone
			}
		}
	}
}

// refetchCheck is how long refetch waits for the record before it asks
// Kafka whether the record was deleted.
const refetchCheck = time.Second
