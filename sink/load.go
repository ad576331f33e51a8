package sink

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/segwarehouse/segwarehouse/schema"
)

// Load writes the batch and advances its offsets in one transaction: DDL
// first (its own short transaction), then, in the data transaction, the
// offsets fence, every event table (COPY; producer duplicates dropped, the
// first copy wins), the users/accounts merges, discards, rejected records
// and the loads history row. Either all of it commits or none.
//
// Load casts b's values to their column types in place and appends the
// failures to b.Discards (schema.Conform); doing so again on a retry of the
// same batch changes nothing. Load is safe for concurrent use. Errors are
// *Error values: Poison() when Postgres refused the data, Fenced() when the
// partitions moved on, otherwise retryable.
func (l *Loader) Load(ctx context.Context, b *schema.Batch) (err error) {
	if len(b.Tables) == 0 && len(b.Offsets) == 0 && len(b.Rejected) == 0 && len(b.Discards) == 0 {
		return nil
	}
	start := time.Now()
	defer func() {
		if err != nil {
			l.forget(b)
			err = l.wrap(fmt.Sprintf("loading batch of %d records", b.Records), err)
		}
	}()
	p, err := l.prepared(ctx, b)
	if err != nil {
		return err
	}
	// Fast path first: COPY straight into each table, no savepoints. A
	// producer duplicate (an id already loaded) aborts the transaction;
	// the flush is then written again with a savepoint per table, where a
	// table that hits a duplicate goes through a temporary table.
	st, err := l.write(ctx, p, b, start, false)
	if errors.Is(err, errDuplicateID) {
		l.log.Debug("a producer duplicate is in the batch; writing it again with per-table dedup", "records", b.Records)
		st, err = l.write(ctx, p, b, start, true)
	}
	if err != nil {
		return err
	}
	l.log.Debug("batch loaded", "records", b.Records, "rows", st.rows, "tables", len(b.Tables),
		"discards", st.discards, "rejected", len(b.Rejected), "dur", time.Since(start))
	return nil
}

// Prepare does ahead of Load the part of it that needs no data
// transaction, so that it can run while the previous batch is still in
// Postgres: creating the tables the batch needs, casting its values to
// their column types (schema.Conform, appending discards to b.Discards)
// and choosing each table's columns. A batch that needs columns added to
// existing tables is left unprepared: that DDL would lock tables the
// flush in the air may want. The result rides on b.Prepared; Load uses it
// unless the loader forgot tables since (a failed Load), and otherwise
// prepares again. A failed Prepare leaves b to Load, which retries.
func (l *Loader) Prepare(ctx context.Context, b *schema.Batch) error {
	b.Prepared = nil
	p, err := l.prepareBatch(ctx, b, true)
	if errors.Is(err, errDDLDeferred) {
		return nil
	}
	if err != nil {
		return l.wrap(fmt.Sprintf("preparing batch of %d records", b.Records), err)
	}
	b.Prepared = p
	return nil
}

// prepared returns b's prepared picture when it is still current, else
// prepares b now.
func (l *Loader) prepared(ctx context.Context, b *schema.Batch) (*picture, error) {
	p, _ := b.Prepared.(*picture)
	b.Prepared = nil // one use: a retry after a failure prepares again
	if p != nil {
		l.mu.Lock()
		fresh := p.gen == l.gen
		l.mu.Unlock()
		if fresh {
			return p, nil
		}
	}
	return l.prepareBatch(ctx, b, false)
}

// prepareBatch runs the DDL b needs, conforms b to the resulting picture
// and computes every event table's columns.
func (l *Loader) prepareBatch(ctx context.Context, b *schema.Batch, ahead bool) (*picture, error) {
	dctx, span := l.tracer.Start(ctx, "segwarehouse.ddl", trace.WithAttributes(attribute.Int("segwarehouse.tables", len(b.Tables))))
	p, err := l.prepare(dctx, b, ahead)
	if errors.Is(err, errDDLDeferred) {
		span.End() // not a failure: the Load adds the columns
		return nil, err
	}
	l.endSpan(span, err)
	if err != nil {
		return nil, err
	}
	if !p.conformed {
		schema.Conform(p.w, b)
	}
	p.cols = make(map[*schema.TableRows]columnSet, len(b.Tables))
	for _, tr := range b.Tables {
		if tr.Merge || len(tr.Rows) == 0 {
			continue
		}
		p.columns(tr)
	}
	return p, nil
}

type loadStats struct {
	rows     int
	perTable map[string]int
	discards int
	temps    map[schema.TableRef]string // the merges' temporary tables (see mergeTemp)
}

// write runs the data transaction.
func (l *Loader) write(ctx context.Context, p *picture, b *schema.Batch, start time.Time, dedup bool) (st loadStats, err error) {
	// The connection is acquired explicitly so that it can be cleaned
	// after a rollback, before it goes back to the pool.
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return st, err
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return st, err
	}
	defer func() {
		if err == nil {
			return
		}
		// A fresh context: the caller's may be what failed, and a
		// connection left mid-transaction is closed by pgx anyway.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx)
		forgetTemps(rctx, conn.Conn())
		if stalePlan(err) {
			// pgx caches statement descriptions per connection; a table
			// recreated with other column types needs them dropped.
			_ = conn.Conn().DeallocateAll(rctx)
		}
	}()

	fctx, span := l.tracer.Start(ctx, "segwarehouse.fence", trace.WithAttributes(attribute.Int("segwarehouse.partitions", len(b.Offsets))))
	uuidTS, err := l.fence(fctx, tx, b)
	l.endSpan(span, err)
	if err != nil {
		return st, err
	}
	st.perTable = make(map[string]int, len(b.Tables))
	// dropped holds, per event table, the ids of rows dropped as producer
	// duplicates: their discards are dropped with them.
	dropped := make(map[schema.TableRef]map[string]bool)
	// Small tables take INSERTs only on the dedup path (see insert.go).
	var small, large []*schema.TableRows
	for _, tr := range b.Tables {
		switch {
		case tr.Merge || len(tr.Rows) == 0:
		case dedup && l.small(p, tr):
			small = append(small, tr)
		default:
			large = append(large, tr)
		}
	}
	if len(small) > 0 {
		ictx, span := l.tracer.Start(ctx, "segwarehouse.insert", trace.WithAttributes(attribute.Int("segwarehouse.tables", len(small))))
		written, drops, err := l.insertSmall(ictx, tx, p, small, uuidTS)
		l.endSpan(span, err)
		if err != nil {
			return st, err
		}
		for ref, n := range written {
			st.rows += n
			st.perTable[ref.String()] += n
		}
		for ref, d := range drops {
			dropped[ref] = d
		}
	}
	if !dedup {
		// The fast path's COPYs go out in pipelined streams, but for
		// tables with column types the loader did not make (pgx learns
		// those, a statement each).
		var piped, rest []*schema.TableRows
		for _, tr := range large {
			if p.exact[tr.Table] {
				piped = append(piped, tr)
			} else {
				rest = append(rest, tr)
			}
		}
		if len(piped) > 0 {
			n, err := l.copyAll(ctx, tx, p, piped, uuidTS)
			if err != nil {
				return st, err
			}
			for i, tr := range piped {
				st.rows += n[i]
				st.perTable[tr.Table.String()] += n[i]
			}
		}
		large = rest
	}
	for i, tr := range large {
		cctx, span := l.tracer.Start(ctx, "segwarehouse.copy", trace.WithAttributes(
			attribute.String("db.collection.name", tr.Table.String()), attribute.Int("segwarehouse.rows", len(tr.Rows))))
		n, drop, err := l.copyEvents(cctx, tx, p, tr, uuidTS, i, dedup)
		l.endSpan(span, err)
		if err != nil {
			return st, err
		}
		if len(drop) > 0 {
			dropped[tr.Table] = drop
		}
		st.rows += n
		st.perTable[tr.Table.String()] += n
	}
	if dedup {
		n, err := l.dropTrackCopies(ctx, tx, b, dropped)
		if err != nil {
			return st, err
		}
		for ref, k := range n {
			st.rows -= k
			st.perTable[ref.String()] -= k
		}
	}
	mctx, span := l.tracer.Start(ctx, "segwarehouse.merge")
	err = l.merge(mctx, tx, p, b, dropped, uuidTS, &st)
	l.endSpan(span, err)
	if err != nil {
		return st, err
	}
	st.discards, err = l.writeTail(ctx, tx, b, dropped, uuidTS, start, st.perTable)
	if err != nil {
		return st, err
	}
	cctx, span := l.tracer.Start(ctx, "segwarehouse.commit")
	err = tx.Commit(cctx)
	l.endSpan(span, err)
	if err != nil {
		return st, fmt.Errorf("committing: %w", err)
	}
	rememberTemps(conn.Conn(), st.temps)
	return st, nil
}

// copyAll is copyEvents without dedup for all of trs, in pipelined
// streams (copyPipelinedLazy: each table's item is built as its stream is
// formed). Each large table's COPY is a span of its own;
// the small ones (thousands, in a flush over many event tables) share one
// span. It returns the rows copied per table.
func (l *Loader) copyAll(ctx context.Context, tx pgx.Tx, p *picture, trs []*schema.TableRows, uuidTS time.Time) ([]int, error) {
	spans := make([]trace.Span, len(trs))
	nsmall := 0
	for _, tr := range trs {
		if len(tr.Rows) <= smallTableRows {
			nsmall++
		}
	}
	var smallSpan trace.Span
	if nsmall > 0 {
		_, smallSpan = l.tracer.Start(ctx, "segwarehouse.copy_small", trace.WithAttributes(attribute.Int("segwarehouse.tables", nsmall)))
	}
	// Each item is built as its stream is formed (copyPipelinedLazy).
	item := func(i int) pipedCopy {
		tr := trs[i]
		names, types := p.columns(tr)
		sh := l.tableShape(tr.Table, names, types)
		it := pipedCopy{table: pgx.Identifier{tr.Table.Schema, tr.Table.Table}, sql: sh.copySQL, src: shapeSource(tr.Rows, sh, uuidTS)}
		if len(tr.Rows) > smallTableRows {
			_, spans[i] = l.tracer.Start(ctx, "segwarehouse.copy", trace.WithAttributes(
				attribute.String("db.collection.name", tr.Table.String()), attribute.Int("segwarehouse.rows", len(tr.Rows))))
			it.done = func(err error) {
				l.endSpan(spans[i], err)
				spans[i] = nil
			}
		}
		return it
	}
	counts, failed, err := copyPipelinedLazy(ctx, tx, len(trs), item)
	for _, span := range spans {
		if span != nil { // never sent, or the stream broke first
			l.endSpan(span, err)
		}
	}
	if smallSpan != nil {
		l.endSpan(smallSpan, err)
	}
	if err != nil {
		if failed < 0 {
			return nil, copyFailed(fmt.Sprintf("copying %d tables", len(trs)), err)
		}
		return nil, copyFailed(fmt.Sprintf("copying %d rows into %s", len(trs[failed].Rows), trs[failed].Table), err)
	}
	n := make([]int, len(trs))
	for i, tr := range trs {
		if n[i] = int(counts[i]); n[i] != len(tr.Rows) {
			return nil, fmt.Errorf("copying %d rows into %s: Postgres copied %d", len(tr.Rows), tr.Table, n[i])
		}
	}
	return n, nil
}

// copyFailed is a failed COPY of the fast path: a unique violation (a
// producer duplicate) becomes errDuplicateID, which sends the flush to
// the dedup path.
func copyFailed(what string, err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == pgerrcode.UniqueViolation {
		return fmt.Errorf("%s: %w", what, errDuplicateID)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func stalePlan(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == pgerrcode.InvalidBinaryRepresentation || pg.Code == pgerrcode.FeatureNotSupported)
}

// fence advances every partition's stored offset, but only where the
// partition is still owned by b.Owner and holds the offset the batch
// started from. It runs first in the transaction: the row locks it takes
// make a zombie loader and the partition's new owner serialise. It returns
// the transaction's timestamp, used as every row's uuid_ts.
func (l *Loader) fence(ctx context.Context, tx pgx.Tx, b *schema.Batch) (time.Time, error) {
	offs := append([]schema.OffsetAdvance(nil), b.Offsets...)
	// One lock order for every loader.
	sort.Slice(offs, func(i, j int) bool {
		if offs[i].Topic != offs[j].Topic {
			return offs[i].Topic < offs[j].Topic
		}
		return offs[i].Partition < offs[j].Partition
	})
	batch := &pgx.Batch{}
	batch.Queue("SELECT now()")
	for _, o := range offs {
		var from *int64
		if o.From >= 0 {
			from = &o.From
		}
		batch.Queue(`UPDATE `+l.offsets+` SET next_offset = $1, updated_at = now()
			WHERE consumer_group = $2 AND topic = $3 AND partition = $4 AND owner = $5
			AND next_offset IS NOT DISTINCT FROM $6::bigint`, o.To, b.Group, o.Topic, o.Partition, b.Owner, from)
	}
	br := tx.SendBatch(ctx, batch)
	var now time.Time
	if err := br.QueryRow().Scan(&now); err != nil {
		br.Close()
		return now, err
	}
	var fenced []schema.OffsetAdvance
	for _, o := range offs {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return now, fmt.Errorf("advancing offset of %s/%d: %w", o.Topic, o.Partition, err)
		}
		if tag.RowsAffected() == 0 {
			fenced = append(fenced, o)
		}
	}
	if err := br.Close(); err != nil {
		return now, err
	}
	if len(fenced) == 0 {
		return now, nil
	}
	// Say why, for the first fenced partition.
	o := fenced[0]
	fe := &FencedError{Group: b.Group, Topic: o.Topic, Partition: o.Partition, Owner: b.Owner, From: o.From, StoredOffset: -1}
	var next *int64
	err := tx.QueryRow(ctx, `SELECT owner, next_offset FROM `+l.offsets+`
		WHERE consumer_group = $1 AND topic = $2 AND partition = $3`, b.Group, o.Topic, o.Partition).Scan(&fe.StoredOwner, &next)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		fe.Missing = true
	case err != nil:
		return now, fmt.Errorf("%w (and reading why: %v)", fe, err)
	case next != nil:
		fe.StoredOffset = *next
	}
	if len(fenced) > 1 {
		return now, fmt.Errorf("%d partitions fenced: %w", len(fenced), fe)
	}
	return now, fe
}

// dropTrackCopies deletes, on the dedup path, the event-table rows that
// this transaction wrote for tracks dropped as duplicates of ones already
// loaded: a copy sent again under another event name found no row of its
// id in its own event table, but the message is ignored whole (SPEC §11).
// Those ids join dropped, so that their discards go too. It returns the
// rows deleted per table.
func (l *Loader) dropTrackCopies(ctx context.Context, tx pgx.Tx, b *schema.Batch, dropped map[schema.TableRef]map[string]bool) (map[schema.TableRef]int, error) {
	type del struct {
		ref schema.TableRef
		ids []string
	}
	var dels []del
	for _, tr := range b.Tables {
		if tr.Merge || !schema.IsEventTable(tr.Table.Table) {
			continue
		}
		copies := dropped[schema.TableRef{Schema: tr.Table.Schema, Table: "tracks"}]
		if len(copies) == 0 {
			continue
		}
		var ids []string
		for i := range tr.Rows {
			if id := tr.Rows[i].ID; copies[id] && !dropped[tr.Table][id] {
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			dels = append(dels, del{tr.Table, ids})
		}
	}
	if len(dels) == 0 {
		return nil, nil
	}
	batch := &pgx.Batch{}
	for _, d := range dels {
		batch.Queue(`DELETE FROM `+pgx.Identifier{d.ref.Schema, d.ref.Table}.Sanitize()+` WHERE "id" = ANY($1::text[])`, d.ids)
	}
	br := tx.SendBatch(ctx, batch)
	defer br.Close()
	n := make(map[schema.TableRef]int, len(dels))
	for _, d := range dels {
		tag, err := br.Exec()
		if err != nil {
			return nil, fmt.Errorf("deleting from %s the rows of %d tracks sent again under another event name: %w", d.ref, len(d.ids), err)
		}
		n[d.ref] = int(tag.RowsAffected())
		if dropped[d.ref] == nil {
			dropped[d.ref] = make(map[string]bool, len(d.ids))
		}
		for _, id := range d.ids {
			dropped[d.ref][id] = true
		}
	}
	return n, br.Close()
}

// errDuplicateID aborts a fast-path flush that met an id already loaded.
var errDuplicateID = errors.New("an id is already loaded")

// copyEvents writes an event table's rows. Without dedup: one binary COPY
// straight into the table (a duplicate id aborts the transaction with
// errDuplicateID). With dedup: a binary COPY inside a savepoint; when a row's id is already in the table (a producer sent the
// message again), the savepoint is rolled back and the rows go through a
// temporary table with ON CONFLICT (id) DO NOTHING, so that the first copy
// wins. It returns the rows written and the ids dropped as duplicates.
func (l *Loader) copyEvents(ctx context.Context, tx pgx.Tx, p *picture, tr *schema.TableRows, uuidTS time.Time, seq int, dedup bool) (int, map[string]bool, error) {
	names, types := p.columns(tr)
	src := newRowSource(tr.Rows, nil, names, types, uuidTS)
	target := pgx.Identifier{tr.Table.Schema, tr.Table.Table}
	exact := p.exact[tr.Table]

	if !dedup {
		n, err := copyRows(ctx, tx, target, src, exact)
		switch {
		case err != nil:
			return 0, nil, copyFailed(fmt.Sprintf("copying %d rows into %s", len(tr.Rows), tr.Table), err)
		case int(n) != len(tr.Rows):
			return 0, nil, fmt.Errorf("copying %d rows into %s: Postgres copied %d", len(tr.Rows), tr.Table, n)
		}
		return int(n), nil, nil
	}

	sp, err := tx.Begin(ctx)
	if err != nil {
		return 0, nil, err
	}
	n, err := copyRows(ctx, sp, target, src, exact)
	if err == nil {
		if err := sp.Commit(ctx); err != nil {
			return 0, nil, err
		}
		if int(n) != len(tr.Rows) {
			return 0, nil, fmt.Errorf("copying %d rows into %s: Postgres copied %d", len(tr.Rows), tr.Table, n)
		}
		return int(n), nil, nil
	}
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Code != pgerrcode.UniqueViolation {
		return 0, nil, fmt.Errorf("copying %d rows into %s: %w", len(tr.Rows), tr.Table, err)
	}
	if err := sp.Rollback(ctx); err != nil {
		return 0, nil, err
	}

	// Slow path: some ids are already loaded.
	tmp, err := l.copyToTemp(ctx, tx, target, fmt.Sprintf("segwh_dedup_%d", seq), src, exact)
	if err != nil {
		return 0, nil, fmt.Errorf("copying %d rows into a temporary table for %s: %w", len(tr.Rows), tr.Table, err)
	}
	cols := quoteAll(names)
	rows, err := tx.Query(ctx, `INSERT INTO `+target.Sanitize()+` (`+cols+`) SELECT `+cols+` FROM `+tmp+
		` ON CONFLICT ("id") DO NOTHING RETURNING "id"`, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return 0, nil, fmt.Errorf("inserting %d rows into %s: %w", len(tr.Rows), tr.Table, err)
	}
	inserted := make(map[string]bool, len(tr.Rows))
	var id string
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error { inserted[id] = true; return nil }); err != nil {
		return 0, nil, fmt.Errorf("inserting %d rows into %s: %w", len(tr.Rows), tr.Table, err)
	}
	drop := make(map[string]bool, len(tr.Rows)-len(inserted))
	for i := range tr.Rows {
		if !inserted[tr.Rows[i].ID] {
			drop[tr.Rows[i].ID] = true
		}
	}
	l.log.Debug("dropped duplicate rows", "table", tr.Table.String(), "rows", len(drop))
	return len(inserted), drop, nil
}

// copyToTemp creates a temporary table shaped like target (dropped at
// commit) and copies src into it. It returns the temporary table's quoted
// name.
func (l *Loader) copyToTemp(ctx context.Context, tx pgx.Tx, target pgx.Identifier, name string, src *rowSource, exact bool) (string, error) {
	tmp := pgx.Identifier{"pg_temp", name}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE `+pgx.Identifier{name}.Sanitize()+
		` (LIKE `+target.Sanitize()+`) ON COMMIT DROP`); err != nil {
		return "", err
	}
	n, err := copyRows(ctx, tx, tmp, src, exact)
	if err != nil {
		return "", err
	}
	if int(n) != src.len() {
		return "", fmt.Errorf("copied %d of %d rows", n, src.len())
	}
	return tmp.Sanitize(), nil
}

func quoteAll(names []string) string {
	size := 0
	for _, n := range names {
		size += len(n) + 4
	}
	var sb strings.Builder
	sb.Grow(size)
	for i, n := range names {
		if i > 0 {
			sb.WriteString(", ")
		}
		if strings.IndexByte(n, '"') < 0 && strings.IndexByte(n, 0) < 0 {
			// What pgx.Identifier.Sanitize makes of it, without its
			// allocations.
			sb.WriteByte('"')
			sb.WriteString(n)
			sb.WriteByte('"')
			continue
		}
		sb.WriteString(pgx.Identifier{n}.Sanitize())
	}
	return sb.String()
}

// endSpan ends a span, recording err without the password.
func (l *Loader) endSpan(span trace.Span, err error) {
	if err != nil {
		msg := scrub(err.Error(), l.password)
		span.RecordError(errors.New(msg))
		span.SetStatus(codes.Error, msg)
	}
	span.End()
}
