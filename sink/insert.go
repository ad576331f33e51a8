package sink

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/segwarehouse/segwarehouse/schema"
)

// A flush over thousands of event tables holds a few rows for most of
// them. On the fast path they go into the same pipelined COPY streams as
// the large tables (copyAll): a binary COPY costs Postgres about 30% less
// per table than a multi-row INSERT. When a flush is written again with
// dedup (a producer duplicate aborted the fast path), its small tables go
// in with INSERT instead, needing no savepoint: pipelined batches of
// multi-row INSERTs, in exec mode (no statement is prepared, so thousands
// of distinct statements cost no cache churn), the next batch built while
// Postgres runs the previous one. ON CONFLICT ("id") DO NOTHING drops the
// duplicates, the first copy winning.
const (
	smallTableRows    = 64    // a table with at most this many rows is small
	maxInsertParams   = 30000 // Postgres takes 65535 parameters per statement
	insertChunkTables = 100   // statements per pipelined batch
)

// small reports whether tr's rows go in by INSERT on the dedup path.
func (l *Loader) small(p *picture, tr *schema.TableRows) bool {
	def := p.w.Table(tr.Table)
	return p.exact[tr.Table] && len(tr.Rows) <= smallTableRows && def != nil && len(tr.Rows)*len(def.Cols) <= maxInsertParams
}

// insertSmall writes the small event tables. It returns the rows written
// and, per table, the ids dropped as duplicates.
func (l *Loader) insertSmall(ctx context.Context, tx pgx.Tx, p *picture, trs []*schema.TableRows, uuidTS time.Time) (map[schema.TableRef]int, map[schema.TableRef]map[string]bool, error) {
	written := make(map[schema.TableRef]int, len(trs))
	dropped := make(map[schema.TableRef]map[string]bool)
	ib := insertBuilder{uuidTS: binary.BigEndian.AppendUint64(nil, uint64(uuidTS.UnixMicro()-unixToY2KMicros))}
	chunk := func(start int) []*schema.TableRows { return trs[start:min(start+insertChunkTables, len(trs))] }
	batch := l.insertBatch(&ib, p, chunk(0))
	for start := 0; start < len(trs); start += insertChunkTables {
		part := chunk(start)
		mrr := tx.Conn().PgConn().ExecBatch(ctx, batch)
		// Postgres runs part meanwhile; its results (the ids inserted)
		// wait in the socket.
		batch = nil
		if next := start + insertChunkTables; next < len(trs) {
			batch = l.insertBatch(&ib, p, chunk(next))
		}
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

// insertBatch builds the pipelined batch of part's INSERTs.
func (l *Loader) insertBatch(ib *insertBuilder, p *picture, part []*schema.TableRows) *pgconn.Batch {
	batch := &pgconn.Batch{}
	for _, tr := range part {
		names, types := p.columns(tr)
		ib.build(l.tableShape(tr.Table, names, types), tr)
		// ExecParams encodes the statement and its parameters into the
		// batch: ib's buffers are free again after it.
		batch.ExecParams(ib.sql, ib.params, ib.oids, ib.formats, nil)
	}
	return batch
}

// tableShape is what the COPYs and INSERTs into one table with one
// column list share from flush to flush: the statements' heads with every
// name quoted, each column's parameter type and format, and where each
// column goes. Immutable once built.
type tableShape struct {
	names   []string
	types   []schema.Type
	head    string // INSERT INTO "schema"."table" ("a", "b", …) VALUES
	copySQL string // COPY "schema"."table" ("a", "b", …) FROM STDIN BINARY
	oids    []uint32
	formats []int16
	index   map[string]int        // column name → position in names; uuid_ts absent
	uuidTS  int                   // position of uuid_ts, -1 when absent
	finds   *schema.ColumnIndexes // over index, for the COPY encoder (shapeSource)
}

// maxTableShapes bounds the loader's cache of table shapes (~6 KB each
// for a table of 45 columns); past it the cache starts again.
const maxTableShapes = 4096

// tableShape returns the shape of table's COPYs and INSERTs with names,
// built once while the table's columns stay the same.
func (l *Loader) tableShape(table schema.TableRef, names []string, types []schema.Type) *tableShape {
	l.shapesMu.Lock()
	defer l.shapesMu.Unlock()
	if sh := l.shapes[table]; sh != nil && slices.Equal(sh.names, names) && slices.Equal(sh.types, types) {
		return sh
	}
	target, cols := pgx.Identifier{table.Schema, table.Table}.Sanitize(), quoteAll(names)
	sh := &tableShape{
		names:   names,
		types:   types,
		head:    "INSERT INTO " + target + " (" + cols + ") VALUES ",
		copySQL: copySQL(target, cols),
		oids:    make([]uint32, len(names)),
		formats: make([]int16, len(names)),
	}
	sh.index, sh.uuidTS = positions(names)
	sh.finds = schema.NewColumnIndexes(sh.index)
	for j := range names {
		if types[j] == schema.Timestamptz {
			sh.oids[j], sh.formats[j] = pgtype.TimestamptzOID, pgtype.BinaryFormatCode
		} else {
			sh.oids[j], sh.formats[j] = 0, pgtype.TextFormatCode
		}
	}
	if l.shapes == nil || len(l.shapes) >= maxTableShapes {
		l.shapes = make(map[schema.TableRef]*tableShape)
	}
	l.shapes[table] = sh
	return sh
}

// insertBuilder builds one INSERT at a time into buffers reused from table
// to table (pgconn copies a statement and its parameters into the batch).
type insertBuilder struct {
	uuidTS  []byte // the uuid_ts parameter (binary timestamptz)
	find    *schema.ColumnIndex
	sql     string
	params  [][]byte // nil: NULL
	oids    []uint32
	formats []int16
	spans   [][2]int32 // per parameter, its bytes in arena; see the span constants
	row     [][2]int32
	arena   []byte
	text    []byte
}

// A parameter's span is its bytes in the arena, or one of these.
const (
	spanNull   = -1
	spanUUIDTS = -2
)

// build makes the multi-row INSERT of tr's rows with shape sh into ib.sql,
// ib.params, ib.oids and ib.formats. Every name is quoted. Timestamps go
// in binary (typed timestamptz: exact, and any year Postgres holds);
// everything else as text with no type (OID 0), Postgres taking the type
// from the column.
func (ib *insertBuilder) build(sh *tableShape, tr *schema.TableRows) {
	n := len(sh.names)
	ib.spans, ib.oids, ib.formats = ib.spans[:0], ib.oids[:0], ib.formats[:0]
	if ib.arena == nil {
		ib.arena = make([]byte, 0, 4096) // an empty value is not NULL
	}
	ib.arena = ib.arena[:0]
	ib.text = append(ib.text[:0], sh.head...)
	if cap(ib.row) < n {
		ib.row = make([][2]int32, n)
	}
	row := ib.row[:n]
	if ib.find == nil {
		ib.find = schema.NewColumnIndex(sh.index)
	} else {
		ib.find.Reset(sh.index)
	}
	for r := range tr.Rows {
		for j := range row {
			row[j] = [2]int32{spanNull, 0}
		}
		cols := tr.Rows[r].Cols
		ib.find.Row(len(cols))
		for k := range cols {
			c := &cols[k]
			if c.Val.IsNull() {
				continue
			}
			if j := ib.find.Find(k, c.Name); j >= 0 {
				at := len(ib.arena)
				ib.arena = appendParam(ib.arena, c.Val, sh.types[j])
				row[j] = [2]int32{int32(at), int32(len(ib.arena))}
			}
		}
		if sh.uuidTS >= 0 {
			row[sh.uuidTS] = [2]int32{spanUUIDTS, 0}
		}
		if r > 0 {
			ib.text = append(ib.text, ", "...)
		}
		ib.text = append(ib.text, '(')
		for j := range row {
			if j > 0 {
				ib.text = append(ib.text, ", "...)
			}
			ib.spans = append(ib.spans, row[j])
			ib.text = append(ib.text, '$')
			ib.text = strconv.AppendInt(ib.text, int64(len(ib.spans)), 10)
		}
		ib.text = append(ib.text, ')')
		ib.oids = append(ib.oids, sh.oids...)
		ib.formats = append(ib.formats, sh.formats...)
	}
	ib.text = append(ib.text, ` ON CONFLICT ("id") DO NOTHING RETURNING "id"`...)
	ib.sql = string(ib.text)
	// The arena has stopped growing: the parameters can point into it.
	ib.params = ib.params[:0]
	for _, sp := range ib.spans {
		switch sp[0] {
		case spanNull:
			ib.params = append(ib.params, nil)
		case spanUUIDTS:
			ib.params = append(ib.params, ib.uuidTS)
		default:
			ib.params = append(ib.params, ib.arena[sp[0]:sp[1]:sp[1]])
		}
	}
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
