package sink

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/valyala/fastjson"

	"github.com/segwarehouse/segwarehouse/schema"
)

// merge writes the users/accounts rows of the batch (SPEC §11). Per table:
// an advisory lock (two loaders' merges of one table serialise; locks are
// taken in key order so they cannot deadlock), the stored per-column keys
// from merge_state, the final values per id, folding its calls (one row
// each, their values already cast) with schema.MergeRow (the greater key
// wins a column; a missing or NULL value never erases one), then one
// upsert through a temporary table and one merge_state upsert. A call
// whose message was dropped as a duplicate of one already loaded
// (dropped, per event table) is ignored with it.
//
// Only the columns an incoming row wins are written; the upsert keeps the
// stored value of every other column (COALESCE), so the stored rows need
// not be read. A row that exists without merge_state (loaded before this
// loader) takes every incoming value. The result does not depend on the
// order calls arrive in, across batches or within one.
//
// Round trips: one for all locks and reads, one for the COPYs into the
// temporary tables (pipelined; a table with column types the loader did
// not make takes a COPY of its own), one for all upserts.
//
// The temporary tables stay with the connection (see mergeTemp); the
// names used are recorded in st.temps, for write to remember once the
// transaction commits.
func (l *Loader) merge(ctx context.Context, tx pgx.Tx, p *picture, b *schema.Batch, dropped map[schema.TableRef]map[string]bool, uuidTS time.Time, st *loadStats) error {
	type mergeTable struct {
		tr    *schema.TableRows
		def   *schema.TableDef
		key   int64
		tmp   string // this flush's temporary table
		drop  string // the connection's older one for this table, or ""
		ids   []string
		calls [][]schema.Row               // per id (same index), its calls
		keys  map[string]map[string]string // merge_state of rows that exist
	}
	var mts []*mergeTable
	temps := connTemps(tx.Conn())
	for _, tr := range b.Tables {
		if !tr.Merge || len(tr.Rows) == 0 {
			continue
		}
		ids, calls := mergeCalls(tr, dropped[schema.MergeSource(tr.Table)])
		if len(ids) == 0 {
			continue
		}
		def := p.w.Table(tr.Table)
		m := &mergeTable{
			tr:    tr,
			def:   def,
			key:   lockKey("segwarehouse", "merge", tr.Table.Schema, tr.Table.Table),
			tmp:   mergeTemp(def),
			ids:   ids,
			calls: calls,
		}
		if old := temps[tr.Table]; old != "" && old != m.tmp {
			m.drop = old
		}
		mts = append(mts, m)
	}
	if len(mts) == 0 {
		return nil
	}
	sort.Slice(mts, func(i, j int) bool { return mts[i].key < mts[j].key })

	batch := &pgx.Batch{}
	for _, m := range mts {
		batch.Queue("SELECT pg_advisory_xact_lock($1)", m.key)
	}
	for _, m := range mts {
		target := pgx.Identifier{m.tr.Table.Schema, m.tr.Table.Table}.Sanitize()
		// merge_state of the ids whose row exists: keys of a row someone
		// deleted must not hold back the incoming values. Driven by unnest,
		// so each id is two index probes whatever the statistics say (a
		// filter "id = ANY($1)" on a table not yet analyzed scans the
		// array for every row).
		// The LATERAL subqueries with LIMIT 1 are never pulled up into a
		// join, so each id costs two primary-key probes and the read does
		// not grow with the table (a hash join scanned all of merge_state
		// on every flush).
		batch.Queue(`SELECT u.id, s.keys FROM unnest($3::text[]) AS u(id)
			CROSS JOIN LATERAL (SELECT 1 FROM `+target+` t WHERE t."id" = u.id LIMIT 1) AS t
			CROSS JOIN LATERAL (SELECT s.keys FROM `+l.mergeState+` s
				WHERE s.schema_name = $1 AND s.table_name = $2 AND s.id = u.id LIMIT 1) AS s`,
			m.tr.Table.Schema, m.tr.Table.Table, m.ids)
		if m.drop != "" {
			batch.Queue(`DROP TABLE IF EXISTS ` + pgx.Identifier{"pg_temp", m.drop}.Sanitize())
		}
		batch.Queue(`CREATE TEMP TABLE IF NOT EXISTS ` + pgx.Identifier{m.tmp}.Sanitize() + ` (LIKE ` + target + `) ON COMMIT DELETE ROWS`)
	}
	br := tx.SendBatch(ctx, batch)
	var parser fastjson.Parser
	for _, m := range mts {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return fmt.Errorf("locking %s for a merge: %w", m.tr.Table, err)
		}
	}
	for _, m := range mts {
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return fmt.Errorf("reading merge state of %s: %w", m.tr.Table, err)
		}
		m.keys = make(map[string]map[string]string)
		var id string
		var raw []byte
		_, err = pgx.ForEachRow(rows, []any{&id, &raw}, func() error {
			k, err := parseKeys(&parser, raw, m.def)
			if err != nil {
				return fmt.Errorf("merge state of %q: %w", id, err)
			}
			m.keys[id] = k
			return nil
		})
		if err != nil {
			br.Close()
			return fmt.Errorf("reading merge state of %s: %w", m.tr.Table, err)
		}
		if m.drop != "" {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return fmt.Errorf("dropping the older temporary table of %s: %w", m.tr.Table, err)
			}
		}
		if _, err := br.Exec(); err != nil {
			br.Close()
			return fmt.Errorf("creating a temporary table for %s: %w", m.tr.Table, err)
		}
	}
	if err := br.Close(); err != nil {
		return err
	}
	st.temps = make(map[schema.TableRef]string, len(mts))
	for _, m := range mts {
		st.temps[m.tr.Table] = m.tmp
	}

	// The rows each merge table writes go into its temporary table: for
	// tables with only the loader's column types, all in one pipelined
	// stream (one round trip), for others one COPY each.
	type mergeCopy struct {
		m      *mergeTable
		final  int   // rows sent
		copied int64 // rows Postgres copied
		names  []string
		ids    []string
		keys   []string
	}
	var copies []mergeCopy
	var piped []pipedCopy
	var pipedOf []int // index in copies of each piped item
	for _, m := range mts {
		final := make([][]schema.Col, 0, len(m.ids))
		ids := make([]string, 0, len(m.ids))
		keys := make([]string, 0, len(m.ids))
		var js []byte
		for i, id := range m.ids {
			stored, exists := m.keys[id]
			won, k := schema.MergeCalls(stored, m.calls[i]...)
			cols := make([]schema.Col, 0, len(won)+1)
			cols = append(cols, schema.Col{Name: "id", Val: schema.Value{Kind: schema.KindString, Str: id}})
			for _, c := range won {
				if c.Name != "id" {
					cols = append(cols, c)
				}
			}
			if exists && len(cols) == 1 {
				continue // every stored value is newer
			}
			final = append(final, cols)
			ids = append(ids, id)
			js = appendKeysJSON(js[:0], k)
			keys = append(keys, string(js))
		}
		if len(final) == 0 {
			continue
		}
		names, types := copyColumns(m.def, rowsOf(final))
		src := newRowSource(nil, final, names, types, uuidTS)
		tmp := pgx.Identifier{"pg_temp", m.tmp}
		c := mergeCopy{m: m, final: len(final), names: names, ids: ids, keys: keys}
		if p.exact[m.tr.Table] {
			piped = append(piped, pipedCopy{table: tmp, src: src})
			pipedOf = append(pipedOf, len(copies))
		} else {
			var err error
			if c.copied, err = copyRows(ctx, tx, tmp, src, false); err != nil {
				return fmt.Errorf("copying %d rows for a merge into %s: %w", c.final, m.tr.Table, err)
			}
		}
		copies = append(copies, c)
	}
	if len(piped) > 0 {
		counts, failed, err := copyPipelined(ctx, tx, piped)
		if err != nil {
			if failed < 0 {
				return fmt.Errorf("copying the rows of %d merges: %w", len(piped), err)
			}
			c := copies[pipedOf[failed]]
			return fmt.Errorf("copying %d rows for a merge into %s: %w", c.final, c.m.tr.Table, err)
		}
		for i, n := range counts {
			copies[pipedOf[i]].copied = n
		}
	}
	if len(copies) == 0 {
		return nil
	}
	for _, c := range copies {
		if c.copied != int64(c.final) {
			return fmt.Errorf("copying %d rows for a merge into %s: Postgres copied %d", c.final, c.m.tr.Table, c.copied)
		}
	}
	upserts := &pgx.Batch{}
	for _, c := range copies {
		upserts.Queue(upsertSQL(c.m.tr.Table, pgx.Identifier{"pg_temp", c.m.tmp}.Sanitize(), c.names))
		upserts.Queue(`INSERT INTO `+l.mergeState+` (schema_name, table_name, id, keys)
			SELECT $1, $2, u.id, u.keys FROM unnest($3::text[], $4::jsonb[]) AS u(id, keys)
			ON CONFLICT (schema_name, table_name, id) DO UPDATE SET keys = EXCLUDED.keys`,
			c.m.tr.Table.Schema, c.m.tr.Table.Table, c.ids, c.keys)
		st.rows += c.final
		st.perTable[c.m.tr.Table.String()] += c.final
	}
	br = tx.SendBatch(ctx, upserts)
	defer br.Close()
	for _, c := range copies {
		m := c.m
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("merging rows into %s: %w", m.tr.Table, err)
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("writing merge state of %s: %w", m.tr.Table, err)
		}
	}
	return br.Close()
}

// A merge goes through a temporary table shaped like its target. Creating
// and dropping two of them on every flush (ON COMMIT DROP) cost ~3.7 ms
// of catalog work and WAL per flush, ~2% of workload (a); so each
// connection keeps its own, emptied at every commit (ON COMMIT DELETE
// ROWS), and a flush only makes sure it exists (CREATE ... IF NOT EXISTS,
// which also holds behind a transaction-pooling proxy).
//
// The name carries a hash of the target's columns: a table that gained a
// column gets a new temporary table, never an older one that lacks it.
// The connection remembers (connTemps) the name it last committed per
// table, so that the next flush with a new name drops the older one: a
// connection holds at most one per merge table, which matters because
// every commit that touched a temporary table empties all of them.

// connTempsKey is the key of a connection's merge temporary tables in its
// pgconn.CustomData: a map[schema.TableRef]string of the names its last
// committed merges used.
const connTempsKey = "segwarehouse.merge_temps"

// mergeTemp names the temporary table a merge into def goes through: a
// hash (lockKey's) of the table and its columns' names and types.
func mergeTemp(def *schema.TableDef) string {
	parts := make([]string, 0, 2+2*len(def.Cols))
	parts = append(parts, def.Ref.Schema, def.Ref.Table)
	for _, c := range def.Cols {
		parts = append(parts, c.Name, strconv.Itoa(int(c.Type)))
	}
	return fmt.Sprintf("segwh_merge_%016x", uint64(lockKey(parts...)))
}

// connTemps returns the merge temporary tables c holds, per target table.
// The map is c's own: only rememberTemps writes it.
func connTemps(c *pgx.Conn) map[schema.TableRef]string {
	m, _ := c.PgConn().CustomData()[connTempsKey].(map[schema.TableRef]string)
	return m
}

// forgetTemps drops c's temporary tables after a failed flush: a table
// changed behind the loader's back (a column's type by hand, say) must
// not keep a stale one in use under the same name.
func forgetTemps(ctx context.Context, c *pgx.Conn) {
	delete(c.PgConn().CustomData(), connTempsKey)
	_, _ = c.Exec(ctx, "DISCARD TEMP")
}

// rememberTemps records, after a commit on c, the temporary tables the
// flush's merges used. Called only after COMMIT: a rolled-back flush's
// DROP and CREATE did not happen, and the next one does them again.
func rememberTemps(c *pgx.Conn, used map[schema.TableRef]string) {
	if len(used) == 0 {
		return
	}
	data := c.PgConn().CustomData()
	m, _ := data[connTempsKey].(map[schema.TableRef]string)
	if m == nil {
		m = make(map[schema.TableRef]string, len(used))
		data[connTempsKey] = m
	}
	for ref, name := range used {
		m[ref] = name
	}
}

// mergeCalls groups a merge table's rows by id, in first-seen order,
// leaving out the calls whose message was dropped as a producer duplicate
// of one already loaded (dropped: the ids dropped from the table of the
// calls, see schema.MergeSource); such a call is ignored like its message
// (SPEC §11).
func mergeCalls(tr *schema.TableRows, dropped map[string]bool) (ids []string, calls [][]schema.Row) {
	at := make(map[string]int, len(tr.Rows))
	for i := range tr.Rows {
		row := &tr.Rows[i]
		if dropped[schema.MergeMessage(row.Key)] {
			continue
		}
		j, ok := at[row.ID]
		if !ok {
			at[row.ID] = len(ids)
			ids = append(ids, row.ID)
			calls = append(calls, tr.Rows[i:i+1:i+1]) // an id's second call copies
			continue
		}
		calls[j] = append(calls[j], *row)
	}
	return ids, calls
}

// rowsOf wraps column lists as rows, for copyColumns.
func rowsOf(cols [][]schema.Col) []schema.Row {
	rows := make([]schema.Row, len(cols))
	for i, c := range cols {
		rows[i].Cols = c
	}
	return rows
}

// upsertSQL moves a temporary table's rows into a merge table: a new id is
// inserted; an existing one takes each non-NULL value of the temporary row
// (the values the incoming rows won) and keeps the rest.
func upsertSQL(table schema.TableRef, tmp string, names []string) string {
	cols := quoteAll(names)
	var set strings.Builder
	for _, n := range names {
		if n == "id" {
			continue
		}
		q := pgx.Identifier{n}.Sanitize()
		if set.Len() > 0 {
			set.WriteString(", ")
		}
		if n == "uuid_ts" {
			set.WriteString(q + " = EXCLUDED." + q)
			continue
		}
		set.WriteString(q + " = COALESCE(EXCLUDED." + q + ", t." + q + ")")
	}
	sql := `INSERT INTO ` + pgx.Identifier{table.Schema, table.Table}.Sanitize() + ` AS t (` + cols + `) SELECT ` + cols + ` FROM ` + tmp
	if set.Len() == 0 {
		return sql + ` ON CONFLICT ("id") DO NOTHING`
	}
	return sql + ` ON CONFLICT ("id") DO UPDATE SET ` + set.String()
}

// merge_state stores a row's ordering keys grouped by key: {key: [columns]}.
// A row's columns mostly share the key of the call that last set them, so
// this is a few entries where a column → key map repeated each ~50-byte key
// for every column. Both directions are written by hand: on every flush
// they ran through encoding/json and maps of interfaces.

// appendKeysJSON appends byCol (column → key) grouped by key as the JSON
// object {key: [columns]}, keys sorted, each key's columns in no
// particular order (jsonb keeps an array's order, and nothing reads it).
// Sorting by key alone is cheap: a row's columns share a few keys, mostly
// the same strings, which compare by pointer. (Sorting by column too was
// 30% of the merge's Go work.)
func appendKeysJSON(buf []byte, byCol map[string]string) []byte {
	type pair struct{ key, col string }
	var arr [64]pair
	pairs := arr[:0]
	for col, key := range byCol {
		pairs = append(pairs, pair{key, col})
	}
	slices.SortFunc(pairs, func(a, b pair) int { return strings.Compare(a.key, b.key) })
	buf = append(buf, '{')
	for i, p := range pairs {
		if i == 0 || p.key != pairs[i-1].key {
			if i > 0 {
				buf = append(buf, "],"...)
			}
			buf = appendJSONString(buf, p.key)
			buf = append(buf, ":["...)
		} else {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, p.col)
	}
	if len(pairs) > 0 {
		buf = append(buf, ']')
	}
	return append(buf, '}')
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as encoding/json writes it.
func appendJSONString(buf []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\t':
			buf = append(buf, '\\', 't')
		case '\r':
			buf = append(buf, '\\', 'r')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// parseKeys reads a stored merge_state value: {key: [columns]}, or the
// earlier {column: key} form.
// Column names the table def has share its strings; def may be nil.
func parseKeys(p *fastjson.Parser, js []byte, def *schema.TableDef) (map[string]string, error) {
	name := func(b []byte) string {
		if def != nil {
			if s, ok := def.ColumnName(b); ok {
				return s
			}
		}
		return string(b)
	}
	v, err := p.ParseBytes(js)
	if err != nil {
		return nil, err
	}
	o, err := v.Object()
	if err != nil {
		return nil, err
	}
	n := 0
	o.Visit(func(_ []byte, v *fastjson.Value) {
		if a, err := v.Array(); err == nil {
			n += len(a)
		} else {
			n++
		}
	})
	out := make(map[string]string, n)
	o.Visit(func(k []byte, v *fastjson.Value) {
		switch v.Type() {
		case fastjson.TypeString:
			out[name(k)] = string(v.GetStringBytes())
		case fastjson.TypeArray:
			key := string(k)
			for _, c := range v.GetArray() {
				if c.Type() == fastjson.TypeString {
					out[name(c.GetStringBytes())] = key
				}
			}
		}
	})
	return out, nil
}
