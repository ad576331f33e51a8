package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/segwarehouse/segwarehouse/schema"
)

// writeTail writes, in one round trip, the batch's discards (except those
// of rows and calls dropped as producer duplicates), its rejected records and the
// loads history row. It returns the discards written.
func (l *Loader) writeTail(ctx context.Context, tx pgx.Tx, b *schema.Batch, dropped map[schema.TableRef]map[string]bool,
	uuidTS, start time.Time, perTable map[string]int) (int, error) {
	batch := &pgx.Batch{}
	var nd int
	if len(b.Discards) > 0 {
		n := len(b.Discards)
		sch, tab, rid, col, val, why := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n),
			make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
		recv := make([]pgtype.Timestamptz, 0, n)
		for _, d := range b.Discards {
			ref := schema.TableRef{Schema: d.Schema, Table: d.Table}
			if d.Message != "" {
				// A users/accounts call's: dropped with its message.
				if dropped[schema.MergeSource(ref)][d.Message] {
					continue
				}
			} else if dropped[ref][d.RowID] {
				continue
			}
			sch = append(sch, clean(d.Schema))
			tab = append(tab, clean(d.Table))
			rid = append(rid, clean(d.RowID))
			col = append(col, clean(d.Column))
			val = append(val, clean(d.Value))
			why = append(why, clean(d.Reason))
			recv = append(recv, pgtype.Timestamptz{Time: d.ReceivedAt, Valid: !d.ReceivedAt.IsZero()})
		}
		if nd = len(sch); nd > 0 {
			batch.Queue(`INSERT INTO `+l.discards+` (schema_name, table_name, row_id, column_name, value, reason, received_at, uuid_ts)
				SELECT u.*, $8 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[]) AS u
				ON CONFLICT DO NOTHING`, sch, tab, rid, col, val, why, recv, uuidTS)
		}
	}
	if n := len(b.Rejected); n > 0 {
		topics, why := make([]string, n), make([]string, n)
		parts, msgs := make([]int32, n), make([]int32, n)
		offs := make([]int64, n)
		ts := make([]pgtype.Timestamptz, n)
		raw := make([][]byte, n)
		ordinal := make(map[schema.Pos]int32)
		for i, r := range b.Rejected {
			topics[i], parts[i], offs[i] = r.Pos.Topic, r.Pos.Partition, r.Pos.Offset
			msgs[i] = ordinal[r.Pos]
			ordinal[r.Pos]++
			ts[i] = pgtype.Timestamptz{Time: r.Timestamp, Valid: !r.Timestamp.IsZero()}
			raw[i] = r.Raw
			if raw[i] == nil {
				raw[i] = []byte{}
			}
			why[i] = clean(r.Reason)
		}
		batch.Queue(`INSERT INTO `+l.rejected+` (topic, partition, "offset", message, kafka_timestamp, raw, reason, uuid_ts)
			SELECT u.*, $8 FROM unnest($1::text[], $2::int[], $3::bigint[], $4::int[], $5::timestamptz[], $6::bytea[], $7::text[]) AS u
			ON CONFLICT DO NOTHING`, topics, parts, offs, msgs, ts, raw, why, uuidTS)
	}
	type offsetJSON struct {
		Topic     string `json:"topic"`
		Partition int32  `json:"partition"`
		From      int64  `json:"from"`
		To        int64  `json:"to"`
	}
	offs := make([]offsetJSON, len(b.Offsets))
	for i, o := range b.Offsets {
		offs[i] = offsetJSON{o.Topic, o.Partition, o.From, o.To}
	}
	offsJSON, err := json.Marshal(offs)
	if err != nil {
		return 0, err
	}
	rowsJSON, err := json.Marshal(perTable)
	if err != nil {
		return 0, err
	}
	batch.Queue(`INSERT INTO `+l.loads+` (consumer_group, owner, started_at, duration_ms, uuid_ts, records, messages, bytes, rows, discards, rejected, offsets)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10, $11, $12::text::jsonb)`,
		b.Group, b.Owner, start, float64(time.Since(start).Microseconds())/1000, uuidTS, b.Records, b.Messages, b.Bytes,
		string(rowsJSON), nd, len(b.Rejected), string(offsJSON))

	br := tx.SendBatch(ctx, batch)
	defer br.Close()
	written := 0
	if nd > 0 {
		tag, err := br.Exec()
		if err != nil {
			return 0, fmt.Errorf("writing %d discards: %w", nd, err)
		}
		written = int(tag.RowsAffected())
	}
	if len(b.Rejected) > 0 {
		if _, err := br.Exec(); err != nil {
			return 0, fmt.Errorf("writing %d rejected records: %w", len(b.Rejected), err)
		}
	}
	if _, err := br.Exec(); err != nil {
		return 0, fmt.Errorf("writing the loads row: %w", err)
	}
	return written, br.Close()
}

// clean makes free-form text storable in a text column: NUL removed,
// invalid UTF-8 replaced. Discard values and reasons come from input.
func clean(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}
