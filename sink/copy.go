package sink

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/segwarehouse/segwarehouse/schema"
)

// copyColumns returns the columns to write for rows of a table: the
// table's columns that some row holds a value for, in the table's order,
// then uuid_ts when the table has it. uuid_ts is always the loader's.
func copyColumns(def *schema.TableDef, rows []schema.Row) (names []string, types []schema.Type) {
	present := make([]bool, len(def.Cols))
	var prev []schema.Col
	for i := range rows {
		cols := rows[i].Cols
		// Rows of a table mostly share one layout: skip a row whose
		// columns (and their nullness) match the previous row's.
		if sameLayout(prev, cols) {
			continue
		}
		for _, c := range cols {
			if j, ok := def.Position(c.Name); ok && !c.Val.IsNull() {
				present[j] = true
			}
		}
		prev = cols
	}
	return presentColumns(def, present)
}

// presentColumns is copyColumns from which columns hold values (present,
// by position in def; schema.Conform records it as TableRows.Present).
func presentColumns(def *schema.TableDef, present []bool) (names []string, types []schema.Type) {
	uuidTS := -1
	for i, c := range def.Cols {
		switch {
		case c.Name == "uuid_ts":
			uuidTS = i
		case present[i]:
			names = append(names, c.Name)
			types = append(types, c.Type)
		}
	}
	if uuidTS >= 0 {
		names = append(names, "uuid_ts")
		types = append(types, schema.Timestamptz)
	}
	return names, types
}

func sameLayout(a, b []schema.Col) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Val.IsNull() != b[i].Val.IsNull() {
			return false
		}
	}
	return true
}

// rowSource holds the rows of one COPY: either rows (event tables) or
// bare column lists (merged rows), the target columns, and uuid_ts.
type rowSource struct {
	rows  []schema.Row
	cols  [][]schema.Col // when set, replaces rows[i].Cols
	names []string
	types []schema.Type
	find  *schema.ColumnIndex // a row's columns among names
	uuid  int                 // position of uuid_ts, -1 when absent
	ts    time.Time

	// giveBack, when set, takes find once encode is done with it.
	giveBack *schema.ColumnIndexes

	// pgx.CopyFromSource state (the fallback path).
	i    int
	vals []any
	err  error
}

func newRowSource(rows []schema.Row, cols [][]schema.Col, names []string, types []schema.Type, uuidTS time.Time) *rowSource {
	index, uuid := positions(names)
	return &rowSource{rows: rows, cols: cols, names: names, types: types, ts: uuidTS, uuid: uuid, find: schema.NewColumnIndex(index)}
}

// shapeSource is newRowSource for rows of a table with shape sh, whose
// column positions are already worked out. Its column index comes from
// the shape's ColumnIndexes and goes back there after encode.
func shapeSource(rows []schema.Row, sh *tableShape, uuidTS time.Time) *rowSource {
	return &rowSource{rows: rows, names: sh.names, types: sh.types, ts: uuidTS, uuid: sh.uuidTS, find: sh.finds.Get(), giveBack: sh.finds}
}

// copySQL is the COPY statement of a table (quoted) and its columns
// (quoted, comma-separated).
func copySQL(table, cols string) string {
	return "COPY " + table + " (" + cols + ") FROM STDIN BINARY"
}

// positions returns where each of the target columns names goes, and the
// position of uuid_ts (-1: absent), which is the loader's and never taken
// from a row.
func positions(names []string) (index map[string]int, uuidTS int) {
	index = make(map[string]int, len(names))
	uuidTS = -1
	for i, n := range names {
		if n == "uuid_ts" {
			uuidTS = i
			continue
		}
		index[n] = i
	}
	return index, uuidTS
}

func (s *rowSource) len() int {
	if s.cols != nil {
		return len(s.cols)
	}
	return len(s.rows)
}

func (s *rowSource) row(i int) (id string, cols []schema.Col) {
	if s.cols != nil {
		return "", s.cols[i]
	}
	return s.rows[i].ID, s.rows[i].Cols
}

// copyRows copies src into table with a binary COPY and returns the rows
// copied. For a table whose columns all have the loader's own types
// (exact), it encodes the stream itself: no statement describe (a round
// trip, a prepared statement and a lock on every index of the table, which
// add up to "out of shared memory" in a flush of thousands of tables).
// Otherwise pgx's CopyFrom learns the column types from Postgres.
func copyRows(ctx context.Context, tx pgx.Tx, table pgx.Identifier, src *rowSource, exact bool) (int64, error) {
	if !exact {
		src.i, src.err = 0, nil
		return tx.CopyFrom(ctx, table, src.names, src)
	}
	conn := tx.Conn()
	r, w := io.Pipe()
	var wg sync.WaitGroup
	var encErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		encErr = src.encode(w, conn.TypeMap(), nil)
		if encErr != nil {
			w.CloseWithError(encErr)
			return
		}
		w.Close()
	}()
	tag, err := conn.PgConn().CopyFrom(ctx, r, "COPY "+table.Sanitize()+" ("+quoteAll(src.names)+") FROM STDIN BINARY")
	r.Close() // unblocks the encoder if Postgres stopped reading
	wg.Wait()
	if encErr != nil {
		return 0, encErr
	}
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// encode writes the rows as a binary COPY stream to w in chunks of about
// 64 KiB (pgconn's read size). scratch, when not nil, holds a buffer to
// use and keep for the next call (w must be done with a chunk when Write
// returns).
func (s *rowSource) encode(w io.Writer, m *pgtype.Map, scratch *[]byte) error {
	const chunk = 65536 - 5
	var buf []byte
	if scratch != nil {
		buf = (*scratch)[:0]
		defer func() { *scratch = buf }()
	}
	if cap(buf) < chunk+4096 {
		buf = make([]byte, 0, chunk+4096)
	}
	buf = append(buf, "PGCOPY\n\377\r\n\000"...)
	buf = binary.BigEndian.AppendUint32(buf, 0) // flags
	buf = binary.BigEndian.AppendUint32(buf, 0) // header extension
	// from[j]: the index in the row's columns of target column j's value,
	// -1 for NULL.
	from := make([]int32, len(s.names))
	for i := 0; i < s.len(); i++ {
		id, cols := s.row(i)
		for j := range from {
			from[j] = -1
		}
		s.find.Row(len(cols))
		for k := range cols {
			c := &cols[k]
			if c.Val.Kind == schema.KindNull {
				continue
			}
			if j := s.find.Find(k, c.Name); j >= 0 {
				from[j] = int32(k)
			}
		}
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(s.names)))
		for j, k := range from {
			var err error
			switch {
			case j == s.uuid:
				buf = appendTimestamptz(buf, s.ts)
			case k < 0:
				buf = binary.BigEndian.AppendUint32(buf, math.MaxUint32) // -1: NULL
			default:
				if buf, err = appendValue(buf, &cols[k].Val, s.types[j], m); err != nil {
					return &valueError{fmt.Errorf("row %q column %s: %w", id, s.names[j], err)}
				}
			}
		}
		if len(buf) >= chunk {
			if _, err := w.Write(buf); err != nil {
				return nil // the reader is gone; pgconn reports why
			}
			buf = buf[:0]
		}
	}
	buf = binary.BigEndian.AppendUint16(buf, math.MaxUint16) // -1: trailer
	_, _ = w.Write(buf)
	if s.giveBack != nil {
		s.giveBack.Put(s.find)
		s.giveBack, s.find = nil, nil // encoded once (shapeSource)
	}
	return nil
}

// Postgres's timestamptz range, in Unix seconds: 4713 BC to 294276 AD.
const (
	minTimestampUnix = -210866803200
	maxTimestampUnix = 9224318016000
	unixToY2KMicros  = 946684800 * 1000000
)

func appendTimestamptz(buf []byte, t time.Time) []byte {
	buf = binary.BigEndian.AppendUint32(buf, 8)
	us := t.Unix()*1000000 + int64(t.Nanosecond())/1000 - unixToY2KMicros
	return binary.BigEndian.AppendUint64(buf, uint64(us))
}

// appendValue appends one length-prefixed binary field holding v, which
// schema.Conform cast to column type t.
func appendValue(buf []byte, v *schema.Value, t schema.Type, m *pgtype.Map) ([]byte, error) {
	switch t {
	case schema.Text:
		s := v.Str
		if v.Kind != schema.KindString {
			s = v.Text()
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
		return append(buf, s...), nil
	case schema.BigInt:
		if v.Kind == schema.KindInt {
			buf = binary.BigEndian.AppendUint32(buf, 8)
			return binary.BigEndian.AppendUint64(buf, uint64(v.Int)), nil
		}
	case schema.Boolean:
		if v.Kind == schema.KindBool {
			b := byte(0)
			if v.Bool() {
				b = 1
			}
			return append(binary.BigEndian.AppendUint32(buf, 1), b), nil
		}
	case schema.Timestamptz:
		if v.Kind == schema.KindTime {
			if u := v.UnixMicro() / 1e6; u < minTimestampUnix || u > maxTimestampUnix {
				return nil, fmt.Errorf("timestamp %s is out of Postgres's range", v.Time().Format(time.RFC3339))
			}
			buf = binary.BigEndian.AppendUint32(buf, 8)
			return binary.BigEndian.AppendUint64(buf, uint64(v.UnixMicro()-unixToY2KMicros)), nil
		}
	case schema.Numeric:
		switch v.Kind {
		case schema.KindNumber:
			return appendNumeric(buf, v.Str)
		case schema.KindInt:
			var tmp [24]byte
			return appendNumeric(buf, string(strconv.AppendInt(tmp[:0], v.Int, 10)))
		}
		n, err := pgValue(*v, t)
		if err != nil {
			return nil, err
		}
		at := len(buf)
		buf = binary.BigEndian.AppendUint32(buf, 0)
		out, err := m.Encode(pgtype.NumericOID, pgtype.BinaryFormatCode, n, buf)
		if err != nil {
			return nil, err
		}
		binary.BigEndian.PutUint32(out[at:], uint32(len(out)-at-4))
		return out, nil
	}
	return nil, fmt.Errorf("a %s value was not cast to the column type %s", v.Kind, t)
}

// Next, Values and Err make rowSource a pgx.CopyFromSource, for tables
// with column types the loader did not create.
func (s *rowSource) Next() bool {
	if s.err != nil || s.i >= s.len() {
		return false
	}
	s.i++
	return true
}

func (s *rowSource) Values() ([]any, error) {
	if s.vals == nil {
		s.vals = make([]any, len(s.names))
	}
	for j := range s.vals {
		s.vals[j] = nil
	}
	id, cols := s.row(s.i - 1)
	s.find.Row(len(cols))
	for k, c := range cols {
		j := s.find.Find(k, c.Name)
		if j < 0 {
			continue
		}
		v, err := pgValue(c.Val, s.types[j])
		if err != nil {
			s.err = &valueError{fmt.Errorf("row %q column %s: %w", id, c.Name, err)}
			return nil, s.err
		}
		s.vals[j] = v
	}
	if s.uuid >= 0 {
		s.vals[s.uuid] = s.ts
	}
	return s.vals, nil
}

func (s *rowSource) Err() error { return s.err }

// pgValue converts a value cast to column type t (schema.Conform) into
// what pgx encodes for that type: text → string, bigint → int64, numeric →
// pgtype.Numeric (exact, from the decimal literal), boolean → bool,
// timestamptz → time.Time, NULL → nil.
func pgValue(v schema.Value, t schema.Type) (any, error) {
	if v.Kind == schema.KindNull {
		return nil, nil
	}
	switch t {
	case schema.Text:
		if v.Kind == schema.KindString {
			return v.Str, nil
		}
		return v.Text(), nil
	case schema.BigInt:
		if v.Kind == schema.KindInt {
			return v.Int, nil
		}
	case schema.Numeric:
		switch v.Kind {
		case schema.KindInt:
			return pgtype.Numeric{Int: big.NewInt(v.Int), Valid: true}, nil
		case schema.KindNumber:
			return parseNumeric(v.Str)
		}
	case schema.Boolean:
		if v.Kind == schema.KindBool {
			return v.Bool(), nil
		}
	case schema.Timestamptz:
		if v.Kind == schema.KindTime {
			return v.Time(), nil
		}
	}
	return nil, fmt.Errorf("a %s value was not cast to the column type %s", v.Kind, t)
}

// parseNumeric converts a JSON number literal into an exact
// pgtype.Numeric: the digits as an integer and a decimal exponent, so
// 1e400, -0.5, 12345678901234567890123 and 1.5E-7 reach Postgres exactly as
// numeric's own input function would read them (same value and display
// scale).
func parseNumeric(s string) (pgtype.Numeric, error) {
	if !strings.ContainsAny(s, "eE") && len(s) <= 19 {
		// Common case: a short decimal like 19.99 fits an int64 mantissa.
		mant, exp := s, int32(0)
		if k := strings.IndexByte(s, '.'); k >= 0 {
			mant, exp = s[:k]+s[k+1:], -int32(len(s)-k-1)
		}
		if i, err := strconv.ParseInt(mant, 10, 64); err == nil {
			return pgtype.Numeric{Int: big.NewInt(i), Exp: exp, Valid: true}, nil
		}
	}
	mant, exp := s, int64(0)
	if k := strings.IndexAny(s, "eE"); k >= 0 {
		e, err := strconv.ParseInt(s[k+1:], 10, 32)
		if err != nil {
			return pgtype.Numeric{}, fmt.Errorf("numeric literal %q: exponent out of range", s)
		}
		mant, exp = s[:k], e
	}
	if k := strings.IndexByte(mant, '.'); k >= 0 {
		exp -= int64(len(mant) - k - 1)
		mant = mant[:k] + mant[k+1:]
	}
	n, ok := new(big.Int).SetString(mant, 10)
	if !ok {
		return pgtype.Numeric{}, fmt.Errorf("%q is not a number", s)
	}
	if exp < -1<<31 || exp > 1<<31-1 {
		return pgtype.Numeric{}, fmt.Errorf("numeric literal %q: exponent out of range", s)
	}
	return pgtype.Numeric{Int: n, Exp: int32(exp), Valid: true}, nil
}

// pipedCopy is one table's binary COPY in a copyPipelined stream. done,
// when set, is called once the COPY's result is in (err nil on success).
type pipedCopy struct {
	table pgx.Identifier
	sql   string // the COPY statement; "" to build it from table and src
	src   *rowSource
	done  func(err error)
}

// copyPipelined copies each item's rows into its table with one binary
// COPY each, sent in streams before their results are read. A stream is
// one extended-protocol pipeline: for each table Parse, Bind and Execute
// of its COPY, its data and CopyDone; one Sync at the stream's end.
// Postgres runs them in order; after an error it drops every message up
// to the Sync, and every later COPY fails, the transaction being aborted.
// So a flush waits for no round trip per table, and the flusher is woken
// once per stream, not once per table, while decoding keeps the cores
// busy. With the Sync once per stream, not once per COPY (as a simple
// Query would have it), Postgres neither sends ReadyForQuery after each
// COPY nor goes through its idle-in-transaction bookkeeping between them:
// measured on 2,000 tables of 4 rows, 8–20% less backend CPU and ~30%
// less of the loader's. Only for tables whose columns are all exact (the
// loader encodes their stream).
//
// Postgres answers each COPY as it runs it, and those answers wait in the
// socket until the loader reads them. A stream holds as many tables as
// keeps its answers under pipelineAnswerBytes, and the loader sends the
// next stream before it reads the previous one's answers, so that
// Postgres goes from one stream to the next without waiting for a round
// trip; at most two streams' answers are ever unread, so Postgres never
// blocks writing them while the loader blocks writing data.
//
// It returns the rows each COPY copied, or the first error and the index
// of the item it belongs to (-1 when it is the connection's); after a
// failed stream at most one more is sent (its COPYs fail too: the
// transaction is aborted). A value that cannot be encoded aborts its COPY
// with CopyFail and comes back as the *valueError. After a failed write
// the connection is closed: the protocol is mid-message.
func copyPipelined(ctx context.Context, tx pgx.Tx, items []pipedCopy) (counts []int64, failed int, err error) {
	return copyPipelinedLazy(ctx, tx, len(items), func(i int) pipedCopy { return items[i] })
}

// copyPipelinedLazy is copyPipelined over n items that item builds on
// demand, each once and in order, as its stream is formed: Postgres
// starts on the first stream while the loader still builds the later
// ones' items (a flush over 2,000 tables spent ~9 ms building them all
// first, with Postgres idle). Items of a stream never sent are not built.
func copyPipelinedLazy(ctx context.Context, tx pgx.Tx, n int, item func(i int) pipedCopy) (counts []int64, failed int, err error) {
	if err := ctx.Err(); err != nil {
		return nil, -1, err
	}
	conn := tx.Conn()
	pc := conn.PgConn()
	// Writes do not watch ctx: a deadline in the past ends a blocked one.
	stop := context.AfterFunc(ctx, func() { _ = pc.Conn().SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() && err == nil {
			// ctx ended as the stream finished: the deadline may be set.
			_ = pc.Conn().Close()
			err = ctx.Err()
		}
	}()
	counts = make([]int64, n)
	items := make([]pipedCopy, 0, n)
	built := func(i int) pipedCopy {
		if i == len(items) {
			items = append(items, item(i))
		}
		return items[i]
	}
	var scratch, wire []byte // the chunk and write buffers, shared by the streams
	var unread *copyStream
	failed = -1
	for start := 0; start < n && failed < 0; {
		end, answers := start, 0
		for end < n {
			a := copyAnswerBytes(built(end))
			if end > start && answers+a > pipelineAnswerBytes {
				break
			}
			answers += a
			end++
		}
		st := &copyStream{items: items[start:end], counts: counts[start:end], first: start}
		if err := st.send(ctx, conn, &scratch, &wire); err != nil {
			return nil, -1, err
		}
		if unread != nil {
			if f, e := unread.receive(ctx, pc); e != nil && failed < 0 {
				if f < 0 { // the connection's: nothing more can be read
					return nil, -1, e
				}
				failed, err = f, e
			}
		}
		unread = st
		start = end
	}
	if unread != nil {
		if f, e := unread.receive(ctx, pc); e != nil && failed < 0 {
			failed, err = f, e
		}
	}
	if failed >= 0 || err != nil {
		return nil, failed, err
	}
	return counts, -1, nil
}

// pipelineAnswerBytes bounds what Postgres may have to write back for one
// stream of COPYs before the loader reads it; two streams' worth stay well
// under the smallest socket buffers.
const pipelineAnswerBytes = 16 << 10

// copyAnswerBytes is at most what Postgres answers to one COPY of a
// stream: ParseComplete, BindComplete, CopyInResponse (a format code per
// column), then CommandComplete or an error; and the stream's one
// ReadyForQuery.
func copyAnswerBytes(it pipedCopy) int { return 2*len(it.src.names) + 512 }

// copyStream is one stream of copyPipelined: its items' COPYs, sent
// together, then their answers read into counts.
type copyStream struct {
	items     []pipedCopy
	counts    []int64
	first     int // index of items[0] in copyPipelined's items
	sent      int
	encFailed int // index in items of a COPY aborted with CopyFail, or -1
	encErr    error
}

// send writes the stream's COPYs and their data. A failed write closes
// the connection: the protocol is mid-message. wire holds the write
// buffer, kept for the next stream.
func (st *copyStream) send(ctx context.Context, conn *pgx.Conn, scratch, wire *[]byte) error {
	pc := conn.PgConn()
	// Whatever pgconn may hold goes first (nothing, between statements).
	w := wireWriter{conn: pc.Conn(), buf: (*wire)[:0], err: pc.Frontend().Flush()}
	defer func() { *wire = w.buf[:0] }()
	st.encFailed = -1
	for i, it := range st.items {
		sql := it.sql
		if sql == "" {
			sql = copySQL(it.table.Sanitize(), quoteAll(it.src.names))
		}
		w.message(&pgproto3.Parse{Query: sql})
		w.message(&pgproto3.Bind{})
		w.message(&pgproto3.Execute{})
		st.sent++
		if st.encErr = it.src.encode(&w, conn.TypeMap(), scratch); st.encErr != nil {
			st.encFailed = i
			w.message(&pgproto3.CopyFail{Message: "segwarehouse could not encode a value"})
			break
		}
		if w.err != nil {
			break
		}
		w.message(&pgproto3.CopyDone{})
	}
	w.message(&pgproto3.Sync{})
	if w.flush(); w.err != nil {
		_ = pc.Conn().Close()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("sending COPY data: %w", w.err)
	}
	return nil
}

// receive reads the answers of the COPYs send sent, up to the stream's
// ReadyForQuery: the first error and the index (in copyPipelined's items)
// of the item it belongs to, -1 when it is the connection's. After an
// error Postgres skips the rest of the stream: those COPYs did not run,
// and their done gets errNotRun.
func (st *copyStream) receive(ctx context.Context, pc *pgconn.PgConn) (failed int, err error) {
	failed = -1
	i := 0 // the COPY the next answer is about
	finish := func(itemErr error) {
		if i == st.encFailed {
			itemErr = st.encErr // Postgres's error is only the echo of CopyFail
		}
		if itemErr != nil && failed < 0 {
			failed, err = st.first+i, itemErr
		}
		if st.items[i].done != nil {
			st.items[i].done(itemErr)
		}
		i++
	}
	for {
		msg, rerr := pc.ReceiveMessage(ctx)
		if rerr != nil {
			return -1, rerr
		}
		switch msg := msg.(type) {
		case *pgproto3.CommandComplete:
			if i < st.sent {
				st.counts[i] = pgconn.NewCommandTag(string(msg.CommandTag)).RowsAffected()
				finish(nil)
			}
		case *pgproto3.ErrorResponse:
			if i < st.sent {
				finish(pgconn.ErrorResponseToPgError(msg))
			}
			for i < st.sent {
				finish(errNotRun)
			}
		case *pgproto3.ReadyForQuery:
			for i < st.sent { // not answered: cannot happen, but never unreported
				finish(errNotRun)
			}
			return failed, err
		}
	}
}

// errNotRun is the result of a COPY Postgres skipped after an earlier
// error in its stream: the transaction is aborted (SQLSTATE 25P02).
var errNotRun = &pgconn.PgError{Severity: "ERROR", Code: pgerrcode.InFailedSQLTransaction,
	Message: "not run: an earlier COPY of the flush failed and the transaction is aborted"}

// wireWriter buffers a stream's messages and writes them to the
// connection wireFlushBytes at a time: a flush over thousands of small
// tables makes a write per 64 KiB, not one per table (a system call each
// for the loader and for Postgres). Each Write (rowSource.encode's
// chunks) becomes one CopyData message.
type wireWriter struct {
	conn net.Conn
	buf  []byte
	err  error
}

// wireFlushBytes is how much wireWriter gathers before it writes.
const wireFlushBytes = 64 << 10

// message appends m, writing the buffer out once it is full.
func (w *wireWriter) message(m pgproto3.FrontendMessage) {
	if w.err != nil {
		return
	}
	if w.buf, w.err = m.Encode(w.buf); w.err == nil && len(w.buf) >= wireFlushBytes {
		w.flush()
	}
}

// flush writes out what is buffered.
func (w *wireWriter) flush() {
	if w.err == nil && len(w.buf) > 0 {
		_, w.err = w.conn.Write(w.buf)
	}
	w.buf = w.buf[:0]
}

func (w *wireWriter) Write(p []byte) (int, error) {
	if w.message(&pgproto3.CopyData{Data: p}); w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}
