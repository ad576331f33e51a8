package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// baselineRowsPerTx is the baseline transaction size.
const baselineRowsPerTx = 20000

// baselineRun is what the COPY baseline measured.
type baselineRun struct {
	seconds   float64 // wall time of the COPY transactions (BEGIN … COMMIT), summed
	rows      int64
	tables    int
	txs       int     // transactions
	copies    int     // COPY statements
	clientCPU float64 // this process during the transactions: pgx's binary encoding
	pgCPU     float64 // Postgres for the baseline's database during the transactions
	otherCPU  float64 // the rest of the machine's busy time during the transactions
}

// runBaseline copies exactly the rows the loader wrote into the source
// schema of src into identical tables (same columns, types, constraints
// and indexes) in a fresh database, with binary COPY from memory, 20,000
// rows per transaction, on one connection. The rows are read from src
// 20,000 at a time between the transactions; only the transactions are
// timed and metered.
func runBaseline(ctx context.Context, srv *server, src, dst *database) (*baselineRun, error) {
	from, err := connect(ctx, src.dsn)
	if err != nil {
		return nil, err
	}
	defer from.Close(context.Background())
	to, err := connect(ctx, dst.dsn)
	if err != nil {
		return nil, err
	}
	defer to.Close(context.Background())
	tables, err := cloneSchema(ctx, from, to, topic)
	if err != nil {
		return nil, err
	}
	if err := srv.checkpoint(ctx); err != nil {
		return nil, err
	}
	m, err := newMeter(dst.name)
	if err != nil {
		return nil, err
	}
	cp := &copier{to: to, meter: m, res: &baselineRun{tables: len(tables)}}
	for _, t := range tables {
		if err := cp.copyTable(ctx, from, pgx.Identifier{topic, t}); err != nil {
			return nil, err
		}
	}
	if err := cp.flush(ctx); err != nil {
		return nil, err
	}
	res := cp.res
	res.clientCPU, res.pgCPU = m.selfCPU, m.pgCPU
	res.otherCPU = m.busyCPU - m.selfCPU - m.pgCPU
	return res, nil
}

// segment is a run of rows for one table inside a baseline transaction.
type segment struct {
	table pgx.Identifier
	cols  []string
	rows  [][]any
}

// copier batches rows into transactions of baselineRowsPerTx rows, which
// may span tables, and COPYs each transaction's rows.
type copier struct {
	to      *pgx.Conn
	meter   *meter
	res     *baselineRun
	pending []segment
	n       int
}

// copyTable reads every row of table from the source connection and
// hands it to the transactions.
func (c *copier) copyTable(ctx context.Context, from *pgx.Conn, table pgx.Identifier) error {
	rows, err := from.Query(ctx, "SELECT * FROM "+table.Sanitize())
	if err != nil {
		return fmt.Errorf("reading %s: %w", table.Sanitize(), err)
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	cols := make([]string, len(fds))
	for i, fd := range fds {
		cols[i] = fd.Name
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return fmt.Errorf("reading %s: %w", table.Sanitize(), err)
		}
		if err := c.add(ctx, table, cols, vals); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", table.Sanitize(), err)
	}
	return nil
}

// add queues one row, and runs the transaction when it is full.
func (c *copier) add(ctx context.Context, table pgx.Identifier, cols []string, row []any) error {
	if k := len(c.pending); k == 0 || !equalIdent(c.pending[k-1].table, table) {
		c.pending = append(c.pending, segment{table: table, cols: cols})
	}
	last := &c.pending[len(c.pending)-1]
	last.rows = append(last.rows, row)
	c.n++
	if c.n >= baselineRowsPerTx {
		return c.flush(ctx)
	}
	return nil
}

// flush copies the queued rows in one transaction, timed and metered.
func (c *copier) flush(ctx context.Context) error {
	if c.n == 0 {
		return nil
	}
	if err := c.meter.begin(); err != nil {
		return err
	}
	start := time.Now()
	err := pgx.BeginFunc(ctx, c.to, func(tx pgx.Tx) error {
		for _, s := range c.pending {
			n, err := tx.CopyFrom(ctx, s.table, s.cols, pgx.CopyFromRows(s.rows))
			if err != nil {
				return fmt.Errorf("copying %d rows into %s: %w", len(s.rows), s.table.Sanitize(), err)
			}
			if int(n) != len(s.rows) {
				return fmt.Errorf("copying %d rows into %s: Postgres copied %d", len(s.rows), s.table.Sanitize(), n)
			}
		}
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		return fmt.Errorf("baseline transaction: %w", err)
	}
	if err := c.meter.end(); err != nil {
		return err
	}
	c.res.seconds += elapsed.Seconds()
	c.res.rows += int64(c.n)
	c.res.txs++
	c.res.copies += len(c.pending)
	c.pending, c.n = c.pending[:0], 0
	return nil
}

func equalIdent(a, b pgx.Identifier) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// tableDDL is one table's definition, read from the catalog.
type tableDDL struct {
	cols        []string // "name type [NOT NULL]"
	constraints []string // "CONSTRAINT name definition"
}

// cloneSchema creates schema, with every table of it in from, in to: same
// columns, types, NOT NULLs, constraints (the primary keys) and other
// indexes. Column defaults are left out: COPY gives every column. It
// returns the tables' names in order.
func cloneSchema(ctx context.Context, from, to *pgx.Conn, schema string) ([]string, error) {
	tables, err := readTableDDL(ctx, from, schema)
	if err != nil {
		return nil, err
	}
	indexes, err := readIndexDDL(ctx, from, schema)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(tables))
	for t := range tables {
		names = append(names, t)
	}
	sort.Strings(names)
	stmts := []string{"CREATE SCHEMA " + pgx.Identifier{schema}.Sanitize()}
	for _, t := range names {
		d := tables[t]
		stmts = append(stmts, "CREATE TABLE "+pgx.Identifier{schema, t}.Sanitize()+
			" (\n\t"+strings.Join(append(d.cols, d.constraints...), ",\n\t")+")")
	}
	stmts = append(stmts, indexes...)
	// No arguments: one round trip with the simple protocol.
	if _, err := to.Exec(ctx, strings.Join(stmts, ";\n")); err != nil {
		return nil, fmt.Errorf("creating the baseline's tables: %w", err)
	}
	return names, nil
}

// readTableDDL reads the columns and constraints of every table of schema.
func readTableDDL(ctx context.Context, c *pgx.Conn, schema string) (map[string]*tableDDL, error) {
	tables := make(map[string]*tableDDL)
	get := func(t string) *tableDDL {
		if tables[t] == nil {
			tables[t] = &tableDDL{}
		}
		return tables[t]
	}
	rows, err := c.Query(ctx, `SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY c.relname, a.attnum`, schema)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", schema, err)
	}
	var table, col, typ string
	var notNull bool
	_, err = pgx.ForEachRow(rows, []any{&table, &col, &typ, &notNull}, func() error {
		def := pgx.Identifier{col}.Sanitize() + " " + typ
		if notNull {
			def += " NOT NULL"
		}
		get(table).cols = append(get(table).cols, def)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", schema, err)
	}
	rows, err = c.Query(ctx, `SELECT c.relname::text, con.conname::text, pg_get_constraintdef(con.oid)
		FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind = 'r' AND con.contype IN ('p', 'u', 'c', 'x')
		ORDER BY c.relname, con.conname`, schema)
	if err != nil {
		return nil, fmt.Errorf("reading the constraints of %s: %w", schema, err)
	}
	var name, def string
	_, err = pgx.ForEachRow(rows, []any{&table, &name, &def}, func() error {
		get(table).constraints = append(get(table).constraints, "CONSTRAINT "+pgx.Identifier{name}.Sanitize()+" "+def)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the constraints of %s: %w", schema, err)
	}
	return tables, nil
}

// readIndexDDL returns CREATE INDEX statements for the indexes of schema's
// tables that no constraint owns. pg_get_indexdef names the table with
// its schema, which the clone keeps.
func readIndexDDL(ctx context.Context, c *pgx.Conn, schema string) ([]string, error) {
	rows, err := c.Query(ctx, `SELECT pg_get_indexdef(i.indexrelid)
		FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind = 'r'
		AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid)
		ORDER BY 1`, schema)
	if err != nil {
		return nil, fmt.Errorf("reading the indexes of %s: %w", schema, err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading the indexes of %s: %w", schema, err)
	}
	return defs, nil
}
