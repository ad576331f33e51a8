package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/segwarehouse/segwarehouse/schema"
)

// ddlLockTimeout bounds how long a DDL transaction waits for a lock (the
// advisory lock, or a table an analyst's long query holds): rather than
// queue every reader of the table behind an ALTER, give up and retry.
const ddlLockTimeout = "30s"

// maxDDLBytes caps one multi-statement DDL string; a batch's DDL is sent in
// as few strings as this allows.
const maxDDLBytes = 1 << 20

// maxChangesPerTx caps the tables one DDL transaction creates or alters:
// each holds several locks until commit, and Postgres's shared lock table
// (max_locks_per_transaction × max_connections) is finite.
const maxChangesPerTx = 500

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// exactTypes are the data types of the columns the loader creates: a
// table whose columns all have one of them is written with a COPY stream
// the loader encodes itself.
var exactTypes = map[string]bool{"text": true, "bigint": true, "numeric": true, "boolean": true, "timestamp with time zone": true}

// tableInfo is what the loader knows of a table besides its definition.
type tableInfo struct {
	def   *schema.TableDef
	exact bool // every column has one of exactTypes
}

// readTables reads the columns of refs in one query: what
// information_schema.columns shows of them (the same relations, columns,
// privilege filter and data_type), read from pg_catalog by name. The view
// itself checks the privileges of every column in the database before
// filtering: 160 ms a call with 2,000 tables of 45 columns.
// Tables that do not exist (or show no columns to the loader) are absent
// from the result.
func readTables(ctx context.Context, q querier, refs []schema.TableRef) (map[schema.TableRef]tableInfo, error) {
	schemas := make([]string, len(refs))
	tables := make([]string, len(refs))
	for i, r := range refs {
		schemas[i], tables[i] = r.Schema, r.Table
	}
	rows, err := q.Query(ctx, `SELECT nc.nspname::text, c.relname::text, a.attname::text,
			CASE WHEN t.typtype = 'd' THEN
				CASE WHEN bt.typelem <> 0 AND bt.typlen = -1 THEN 'ARRAY'
					WHEN nbt.nspname = 'pg_catalog' THEN format_type(t.typbasetype, NULL)
					ELSE 'USER-DEFINED' END
			ELSE
				CASE WHEN t.typelem <> 0 AND t.typlen = -1 THEN 'ARRAY'
					WHEN nt.nspname = 'pg_catalog' THEN format_type(a.atttypid, NULL)
					ELSE 'USER-DEFINED' END
			END
		FROM unnest($1::text[], $2::text[]) AS r(s, n)
		JOIN pg_namespace nc ON nc.nspname = r.s
		JOIN pg_class c ON c.relnamespace = nc.oid AND c.relname = r.n AND c.relkind IN ('r', 'v', 'f', 'p')
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		JOIN pg_type t ON t.oid = a.atttypid
		JOIN pg_namespace nt ON nt.oid = t.typnamespace
		LEFT JOIN (pg_type bt JOIN pg_namespace nbt ON bt.typnamespace = nbt.oid) ON t.typtype = 'd' AND t.typbasetype = bt.oid
		WHERE NOT pg_is_other_temp_schema(nc.oid)
			AND (pg_has_role(c.relowner, 'USAGE') OR has_column_privilege(c.oid, a.attnum, 'SELECT, INSERT, UPDATE, REFERENCES'))
		ORDER BY 1, 2, a.attnum`, schemas, tables)
	if err != nil {
		return nil, fmt.Errorf("reading columns of %d tables: %w", len(refs), err)
	}
	cols := make(map[schema.TableRef][]schema.ColumnDef)
	inexact := make(map[schema.TableRef]bool)
	var ref schema.TableRef
	var name, typ string
	_, err = pgx.ForEachRow(rows, []any{&ref.Schema, &ref.Table, &name, &typ}, func() error {
		cols[ref] = append(cols[ref], schema.ColumnDef{Name: name, Type: schema.ParseType(typ)})
		if !exactTypes[typ] {
			inexact[ref] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading columns of %d tables: %w", len(refs), err)
	}
	out := make(map[schema.TableRef]tableInfo, len(cols))
	for r, c := range cols {
		out[r] = tableInfo{def: schema.NewTableDef(r, c), exact: !inexact[r]}
	}
	return out, nil
}

// picture is a batch's view of the warehouse: a private Warehouse holding
// the definitions of the batch's tables (TableDefs are never modified once
// built, so sharing them with the cache is safe) and which of them have
// only the loader's own column types.
type picture struct {
	w     *schema.Warehouse
	exact map[schema.TableRef]bool
	// gen is the cache generation the picture was read in: a forget since
	// then (a failed Load) makes a prepared picture stale.
	gen uint64
	// conformed: b's values are already cast to this picture's columns
	// (schema.ConformKnown).
	conformed bool
	// cols holds each event table's COPY columns once the batch is
	// conformed (see columns).
	cols map[*schema.TableRows]columnSet
}

// columnSet is the columns a table's rows are written with.
type columnSet struct {
	names []string
	types []schema.Type
}

// columns returns the columns tr's rows are written with (copyColumns),
// computed once per batch.
func (p *picture) columns(tr *schema.TableRows) ([]string, []schema.Type) {
	if cs, ok := p.cols[tr]; ok {
		return cs.names, cs.types
	}
	def := p.w.Table(tr.Table)
	var names []string
	var types []schema.Type
	if len(tr.Present) == len(def.Cols) {
		names, types = presentColumns(def, tr.Present)
	} else {
		names, types = copyColumns(def, tr.Rows)
	}
	if p.cols == nil {
		p.cols = make(map[*schema.TableRows]columnSet)
	}
	p.cols[tr] = columnSet{names, types}
	return names, types
}

// prepare makes sure every table and column the batch needs exists and
// returns the batch's picture of the warehouse.
//
// ahead is for a batch prepared while another flush is in the air: it may
// create tables, but adding columns would lock tables that flush may hold
// or still want (two loaders' transactions each waiting for the other),
// so a batch that needs columns added is left to its Load
// (errDDLDeferred).
func (l *Loader) prepare(ctx context.Context, b *schema.Batch, ahead bool) (*picture, error) {
	p := &picture{w: schema.NewWarehouse(), exact: make(map[schema.TableRef]bool, len(b.Tables))}
	w := p.w
	merge := make(map[schema.TableRef]bool, len(b.Tables))
	var missing []schema.TableRef
	l.mu.Lock()
	p.gen = l.gen
	for _, tr := range b.Tables {
		merge[tr.Table] = tr.Merge
		if d := l.cache.Table(tr.Table); d != nil {
			w.Set(d)
			p.exact[tr.Table] = l.exact[tr.Table]
		} else {
			missing = append(missing, tr.Table)
		}
	}
	l.mu.Unlock()
	if len(missing) > 0 {
		defs, err := readTables(ctx, l.pool, missing)
		if err != nil {
			return nil, err
		}
		l.remember(p, defs, merge)
	}
	// The steady state needs no DDL: one pass casts the values and finds
	// that out, instead of Plan's pass and then Conform's.
	if _, ok := schema.ConformKnown(w, b); ok {
		p.conformed = true
		return p, nil
	}
	changes := schema.Plan(w, b)
	// Each round applies up to maxChangesPerTx changes and must shrink the
	// plan; a plan that does not shrink means the loader cannot see what it
	// created (it sees only columns it has privileges on, as in information_schema).
	// Only a round's own tables are planned again after it (a plan of the
	// whole batch costs ~0.1 s with 2,000 tables).
	for rounds := len(changes)/maxChangesPerTx + 2; len(changes) > 0; rounds-- {
		if rounds == 0 {
			return nil, &ddlError{fmt.Errorf("%s still missing after creating it: the loader must own the tables it writes (ALTER TABLE %s OWNER TO <loader user>;)",
				changes[0], pgx.Identifier{changes[0].Table.Schema, changes[0].Table.Table}.Sanitize())}
		}
		if ahead && !allCreate(changes) {
			return nil, errDDLDeferred
		}
		n := min(len(changes), maxChangesPerTx)
		if err := l.applyDDL(ctx, p, b, changes[:n], merge, ahead); err != nil {
			if errors.Is(err, errDDLDeferred) {
				return nil, err
			}
			return nil, &ddlError{err}
		}
		changes = append(planOnly(w, b, changes[:n]), changes[n:]...)
	}
	return p, nil
}

// planOnly plans the tables of changes (schema.Plan over b's rows of them
// only).
func planOnly(w *schema.Warehouse, b *schema.Batch, changes []schema.Change) []schema.Change {
	want := make(map[schema.TableRef]bool, len(changes))
	for _, c := range changes {
		want[c.Table] = true
	}
	sub := &schema.Batch{Tables: make([]*schema.TableRows, 0, len(changes))}
	for _, tr := range b.Tables {
		if want[tr.Table] {
			sub.Tables = append(sub.Tables, tr)
		}
	}
	return schema.Plan(w, sub)
}

// errDDLDeferred: a batch prepared ahead needs columns added, which its
// Load does.
var errDDLDeferred = errors.New("adding columns is left to the batch's Load")

func allCreate(changes []schema.Change) bool {
	for _, c := range changes {
		if !c.Create {
			return false
		}
	}
	return true
}

// remember records table definitions in the cache and in p.
func (l *Loader) remember(p *picture, defs map[schema.TableRef]tableInfo, merge map[schema.TableRef]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for r, ti := range defs {
		ti.def.Merge = merge[r]
		l.cache.Set(ti.def)
		l.exact[r] = ti.exact
		p.w.Set(ti.def)
		p.exact[r] = ti.exact
	}
}

// forget drops the batch's tables from the cache, so that the next Load
// reads them again.
func (l *Loader) forget(b *schema.Batch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	for _, tr := range b.Tables {
		l.cache.Forget(tr.Table)
		delete(l.exact, tr.Table)
	}
}

// applyDDL runs changes in one transaction under the DDL advisory lock.
// Another replica may have made some of them already: the tables are read
// again under the lock and the batch planned again, so only what is still
// missing runs. w and the cache are updated with what the tables hold
// afterwards.
func (l *Loader) applyDDL(ctx context.Context, p *picture, b *schema.Batch, changes []schema.Change, merge map[schema.TableRef]bool, ahead bool) error {
	start := time.Now()
	w := p.w
	refs := make([]schema.TableRef, len(changes))
	for i, c := range changes {
		refs[i] = c.Table
	}
	var created, added, newSchemas int
	conns := 1 // connections that ran statements
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		// One round trip: lock, what schemas exist, what the tables hold now.
		batch := &pgx.Batch{}
		batch.Queue("SET LOCAL lock_timeout = '" + ddlLockTimeout + "'")
		batch.Queue("SELECT pg_advisory_xact_lock($1)", ddlLockKey)
		schemas := make([]string, 0, 1)
		seen := make(map[string]bool)
		for _, r := range refs {
			if !seen[r.Schema] {
				seen[r.Schema] = true
				schemas = append(schemas, r.Schema)
			}
		}
		batch.Queue("SELECT nspname::text FROM pg_namespace WHERE nspname = ANY($1)", schemas)
		br := tx.SendBatch(ctx, batch)
		if _, err := br.Exec(); err != nil {
			br.Close()
			return fmt.Errorf("setting lock_timeout: %w", err)
		}
		if _, err := br.Exec(); err != nil {
			br.Close()
			return fmt.Errorf("waiting for the DDL lock: %w", err)
		}
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return fmt.Errorf("reading schemas: %w", err)
		}
		existing, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			br.Close()
			return fmt.Errorf("reading schemas: %w", err)
		}
		if err := br.Close(); err != nil {
			return err
		}
		defs, err := readTables(ctx, tx, refs)
		if err != nil {
			return err
		}
		l.remember(p, defs, merge)
		for _, r := range refs {
			if _, ok := defs[r]; !ok {
				w.Forget(r)
			}
		}
		// Plan this transaction's share of the changes again, against
		// what the tables hold under the lock.
		todo := planOnly(w, b, changes)
		if len(todo) == 0 {
			return nil
		}
		if ahead && !allCreate(todo) {
			return errDDLDeferred // another loader created a table meanwhile
		}
		haveSchema := make(map[string]bool, len(existing))
		for _, s := range existing {
			haveSchema[s] = true
		}
		var schemaStmts, creates, alters []string
		for _, c := range todo {
			if c.Create && !haveSchema[c.Table.Schema] {
				haveSchema[c.Table.Schema] = true
				schemaStmts = append(schemaStmts, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{c.Table.Schema}.Sanitize())
				newSchemas++
			}
			if c.Create {
				creates = append(creates, ddlFor(c))
				created++
			} else {
				alters = append(alters, ddlFor(c))
				added += len(c.Cols)
			}
		}
		n, err := l.execDDL(ctx, tx, schemaStmts, creates, alters)
		conns = n
		if err != nil {
			return err
		}
		defs, err = readTables(ctx, tx, refs)
		if err != nil {
			return err
		}
		l.remember(p, defs, merge)
		return nil
	})
	if err != nil {
		// A failed transaction may have updated the cache from tables it
		// then rolled back.
		l.mu.Lock()
		l.gen++
		for _, r := range refs {
			l.cache.Forget(r)
			delete(l.exact, r)
		}
		l.mu.Unlock()
		return fmt.Errorf("changing %d tables (first %s): %w", len(changes), changes[0], err)
	}
	l.ddl.schemas.Add(int64(newSchemas))
	l.ddl.tables.Add(int64(created))
	l.ddl.columns.Add(int64(added))
	if created > 0 || added > 0 {
		l.log.Info("warehouse schema changed", "tables_created", created, "columns_added", added, "connections", conns, "dur", time.Since(start))
	}
	return nil
}

// ddlFor returns the statement for one change. Every name is quoted.
func ddlFor(c schema.Change) string {
	var sb strings.Builder
	t := pgx.Identifier{c.Table.Schema, c.Table.Table}.Sanitize()
	if c.Create {
		sb.WriteString("CREATE TABLE IF NOT EXISTS ")
		sb.WriteString(t)
		sb.WriteString(" (")
		for i, col := range c.Cols {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(pgx.Identifier{col.Name}.Sanitize())
			sb.WriteByte(' ')
			sb.WriteString(col.Type.SQL())
			if col.Name == "id" {
				sb.WriteString(" PRIMARY KEY")
			}
		}
		sb.WriteString(")")
		return sb.String()
	}
	sb.WriteString("ALTER TABLE ")
	sb.WriteString(t)
	for i, col := range c.Cols {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(" ADD COLUMN IF NOT EXISTS ")
		sb.WriteString(pgx.Identifier{col.Name}.Sanitize())
		sb.WriteByte(' ')
		sb.WriteString(col.Type.SQL())
	}
	return sb.String()
}

// joinStatements joins statements with ";" into strings of at most max
// bytes (a single longer statement stands alone).
func joinStatements(stmts []string, max int) []string {
	var out []string
	var sb strings.Builder
	for _, s := range stmts {
		if sb.Len() > 0 && sb.Len()+len(s)+2 > max {
			out = append(out, sb.String())
			sb.Reset()
		}
		if sb.Len() > 0 {
			sb.WriteString(";\n")
		}
		sb.WriteString(s)
	}
	if sb.Len() > 0 {
		out = append(out, sb.String())
	}
	return out
}
