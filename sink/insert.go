package sink

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/segwarehouse/segwarehouse/schema"
)

// Small event tables go in with INSERT instead of COPY: a flush over
// thousands of event tables holds a few rows for most of them, and a COPY
// costs two round trips per table whatever its size. All the small tables
// of a flush are written by one pipelined batch of multi-row INSERTs, one
// round trip in all, in exec mode (no statement is prepared, so thousands
// of distinct statements cost no cache churn). ON CONFLICT ("id") DO
// NOTHING drops producer duplicates, the first copy winning, with no
// savepoint.
const (
	smallTableRows   = 64    // a table with at most this many rows is small
	maxInsertParams  = 30000 // Postgres takes 65535 parameters per statement
	maxBatchedTables = 1000  // statements per pipelined batch
)

// small reports whether tr's rows go in by INSERT.
func (l *Loader) small(p *picture, tr *schema.TableRows) bool {
	def := p.w.Table(tr.Table)
	return p.exact[tr.Table] && len(tr.Rows) <= smallTableRows && def != nil && len(tr.Rows)*len(def.Cols) <= maxInsertParams
}

// insertSmall writes the small event tables. It returns the rows written
// and, per table, the ids dropped as duplicates.
func (l *Loader) insertSmall(ctx context.Context, tx pgx.Tx, p *picture, trs []*schema.TableRows, uuidTS time.Time) (map[schema.TableRef]int, map[schema.TableRef]map[string]bool, error) {
	written := make(map[schema.TableRef]int, len(trs))
	dropped := make(map[schema.TableRef]map[string]bool)
	uuidText := binary.BigEndian.AppendUint64(nil, uint64(uuidTS.UnixMicro()-unixToY2KMicros))
	for start := 0; start < len(trs); start += maxBatchedTables {
		part := trs[start:min(start+maxBatchedTables, len(trs))]
		batch := &pgconn.Batch{}
		for _, tr := range part {
			names, types := p.columns(tr)
			sql, params, oids, formats := insertStatement(tr, names, types, uuidText)
			batch.ExecParams(sql, params, oids, formats, nil)
		}
		mrr := tx.Conn().PgConn().ExecBatch(ctx, batch)
		for _, tr := range part {
			if !mrr.NextResult() {
				err := mrr.Close()
				if err == nil {
					err = errors.New("missing result")
				}
				return nil, nil, fmt.Errorf("inserting %d rows into %s: %w", len(tr.Rows), tr.Table, err)
			}
			rr := mrr.ResultReader()
			inserted := make(map[string]bool, len(tr.Rows))
			for rr.NextRow() {
				inserted[string(rr.Values()[0])] = true
			}
			if _, err := rr.Close(); err != nil {
				mrr.Close()
				return nil, nil, fmt.Errorf("inserting %d rows into %s: %w", len(tr.Rows), tr.Table, err)
			}
			written[tr.Table] = len(inserted)
			if len(inserted) < len(tr.Rows) {
				drop := make(map[string]bool)
				for i := range tr.Rows {
					if !inserted[tr.Rows[i].ID] {
						drop[tr.Rows[i].ID] = true
					}
				}
				dropped[tr.Table] = drop
			}
		}
		if err := mrr.Close(); err != nil {
			return nil, nil, err
		}
	}
	return written, dropped, nil
}

// insertStatement builds one multi-row INSERT of tr's rows and its
// parameters (nil: NULL). Every name is quoted. Timestamps go in binary
// (typed timestamptz: exact, and any year Postgres holds); everything else
// as text with no type (OID 0), Postgres taking the type from the column.
// The parameters are slices of one buffer, and every uuid_ts parameter is
// uuidTS itself.
func insertStatement(tr *schema.TableRows, names []string, types []schema.Type, uuidTS []byte) (string, [][]byte, []uint32, []int16) {
	pos := make(map[string]int, len(names))
	for i, n := range names {
		pos[n] = i
	}
	var sb strings.Builder
	sb.WriteString("INSERT INTO ")
	sb.WriteString(pgx.Identifier{tr.Table.Schema, tr.Table.Table}.Sanitize())
	sb.WriteString(" (")
	sb.WriteString(quoteAll(names))
	sb.WriteString(") VALUES ")
	n := len(tr.Rows) * len(names)
	params := make([][]byte, 0, n)
	oids := make([]uint32, 0, n)
	formats := make([]int16, 0, n)
	row := make([][]byte, len(names))
	var arena []byte
	for r := range tr.Rows {
		clear(row)
		for _, c := range tr.Rows[r].Cols {
			if j, ok := pos[c.Name]; ok && !c.Val.IsNull() {
				at := len(arena)
				arena = appendParam(arena, c.Val, types[j])
				// Earlier parameters keep the old array when arena grows.
				row[j] = arena[at:len(arena):len(arena)]
			}
		}
		if j, ok := pos["uuid_ts"]; ok {
			row[j] = uuidTS
		}
		if r > 0 {
			sb.WriteString(", ")
		}
		sb.WriteByte('(')
		for j := range row {
			if j > 0 {
				sb.WriteString(", ")
			}
			params = append(params, row[j])
			if types[j] == schema.Timestamptz {
				oids, formats = append(oids, pgtype.TimestamptzOID), append(formats, pgtype.BinaryFormatCode)
			} else {
				oids, formats = append(oids, 0), append(formats, pgtype.TextFormatCode)
			}
			sb.WriteByte('$')
			sb.WriteString(strconv.Itoa(len(params)))
		}
		sb.WriteByte(')')
	}
	sb.WriteString(` ON CONFLICT ("id") DO NOTHING RETURNING "id"`)
	return sb.String(), params, oids, formats
}

// appendParam appends a parameter for a column of type t holding a value
// schema.Conform cast to t: timestamps in binary, the rest as text.
func appendParam(buf []byte, v schema.Value, t schema.Type) []byte {
	switch t {
	case schema.BigInt:
		return strconv.AppendInt(buf, v.Int, 10)
	case schema.Numeric:
		if v.Kind == schema.KindInt {
			return strconv.AppendInt(buf, v.Int, 10)
		}
		return append(buf, v.Str...) // a JSON number literal: valid numeric input
	case schema.Boolean:
		if v.Bool() {
			return append(buf, "true"...)
		}
		return append(buf, "false"...)
	case schema.Timestamptz:
		return binary.BigEndian.AppendUint64(buf, uint64(v.UnixMicro()-unixToY2KMicros))
	}
	if v.Kind == schema.KindString {
		return append(buf, v.Str...)
	}
	return append(buf, v.Text()...)
}
