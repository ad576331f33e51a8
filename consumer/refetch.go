package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
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
// One client, made on the first refetch and kept until Run returns (a
// flush with many poison records would otherwise pay a connection, TLS
// and SASL included, per record), reads the one partition from pos,
// read-committed as the group's client does, and drops it again. Fetch
// errors are retried (kgo backs off) until ctx ends; errRecordGone when
// the first record Kafka returns is past pos, when the log start is past
// it, or when Kafka has not known the topic for c.topicGone.
func (c *Consumer) refetch(ctx context.Context, pos schema.Pos) ([]byte, error) {
	c.refetchMu.Lock()
	defer c.refetchMu.Unlock()
	if c.refetchCl == nil {
		cl, err := kgo.NewClient(slices.Concat(c.clientOpts, c.extra, []kgo.Opt{
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			// Out of range means the record was deleted: restart at the log
			// start, whose first record is then past pos.
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.WithLogger(kgoLogger{c.log}),
		})...)
		if err != nil {
			return nil, fmt.Errorf("creating a Kafka client to read %s/%d offset %d again: %w", pos.Topic, pos.Partition, pos.Offset, err)
		}
		c.refetchCl = cl
		c.refetchClients.Add(1)
	}
	cl := c.refetchCl
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{pos.Topic: {pos.Partition: kgo.NewOffset().At(pos.Offset)}})
	// Removing the partition also drops whatever was fetched for it.
	defer cl.RemoveConsumePartitions(map[string][]int32{pos.Topic: {pos.Partition}})
	adm := kadm.NewClient(cl)
	var lastErr error
	var unknownSince time.Time // since when Kafka has not known pos.Topic
	for {
		pctx, cancel := context.WithTimeout(ctx, refetchCheck)
		fs := cl.PollRecords(pctx, 1)
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s/%d offset %d again from Kafka: %w", pos.Topic, pos.Partition, pos.Offset, errors.Join(err, lastErr))
		}
		// The client reads only pos's partition, from pos (removing an
		// earlier refetch's partition dropped what was fetched for it; the
		// filter is a guard), so the first record is pos's or past it.
		for _, r := range fs.Records() {
			if r.Topic != pos.Topic || r.Partition != pos.Partition {
				continue
			}
			if r.Offset != pos.Offset {
				return nil, errRecordGone
			}
			return r.Value, nil
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
		// or the topic was, nothing ever will. A topic Kafka does not know
		// may also be a moment's metadata lag, so only one it has not
		// known for c.topicGone counts as deleted.
		starts, err := adm.ListStartOffsets(ctx, pos.Topic)
		if err != nil {
			continue
		}
		if o, ok := starts.Lookup(pos.Topic, pos.Partition); ok && o.Err == nil && o.Offset > pos.Offset {
			return nil, errRecordGone
		}
		if o, ok := starts.Lookup(pos.Topic, -1); !ok || !errors.Is(o.Err, kerr.UnknownTopicOrPartition) {
			unknownSince = time.Time{}
		} else if unknownSince.IsZero() {
			unknownSince = time.Now()
		} else if time.Since(unknownSince) >= c.topicGone {
			return nil, fmt.Errorf("%w: Kafka has not known the topic for %s", errRecordGone, c.topicGone)
		}
	}
}

// refetchCheck is how long refetch waits for the record before it asks
// Kafka whether the record was deleted.
const refetchCheck = time.Second

// refetchTopicGone is how long Kafka must not know a topic before refetch
// takes it for deleted.
const refetchTopicGone = 30 * time.Second

// closeRefetch closes refetch's client, if one was made.
func (c *Consumer) closeRefetch() {
	c.refetchMu.Lock()
	defer c.refetchMu.Unlock()
	if c.refetchCl != nil {
		c.refetchCl.Close()
		c.refetchCl = nil
	}
}
