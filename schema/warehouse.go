package schema

import (
	"fmt"
	"sync/atomic"
)

// MaxColumns is the most columns a table may hold (SPEC §7).
const MaxColumns = 1500

// ColumnDef is one column of a warehouse table.
type ColumnDef struct {
	Name string
	Type Type
}

// TableDef is a warehouse table's columns in their physical order.
type TableDef struct {
	Ref   TableRef
	Merge bool
	Cols  []ColumnDef
	index map[string]int
	finds ColumnIndexes // over index, kept from flush to flush
}

// NewTableDef builds a table definition from its columns.
func NewTableDef(ref TableRef, cols []ColumnDef) *TableDef {
	t := &TableDef{Ref: ref, Cols: append([]ColumnDef(nil), cols...), index: make(map[string]int, len(cols))}
	for i, c := range t.Cols {
		t.index[c.Name] = i
	}
	t.finds.index = t.index
	return t
}

// Column returns the column's type and whether it exists.
func (t *TableDef) Column(name string) (Type, bool) {
	i, ok := t.Position(name)
	if !ok {
		return TypeUnknown, false
	}
	return t.Cols[i].Type, true
}

// Position returns the column's index in Cols and whether it exists.
func (t *TableDef) Position(name string) (int, bool) {
	i, ok := t.index[name]
	return i, ok
}

// ColumnName returns the table's own copy of the column name spelled by b,
// and whether the table has it: a reader of stored names can share the
// table's strings instead of allocating its own.
func (t *TableDef) ColumnName(b []byte) (string, bool) {
	i, ok := t.index[string(b)]
	if !ok {
		return "", false
	}
	return t.Cols[i].Name, true
}

// Warehouse is the in-memory picture of a warehouse: tables and their
// ordered, typed columns. It is not safe for concurrent use; the sink guards
// it.
type Warehouse struct {
	tables map[TableRef]*TableDef
}

// NewWarehouse returns an empty picture.
func NewWarehouse() *Warehouse { return &Warehouse{tables: make(map[TableRef]*TableDef)} }

// Table returns the table's definition, nil when unknown.
func (w *Warehouse) Table(ref TableRef) *TableDef { return w.tables[ref] }

// Set records a table's definition (e.g. as read from information_schema).
func (w *Warehouse) Set(t *TableDef) { w.tables[t.Ref] = t }

// Forget drops a table from the picture so that it is read again.
func (w *Warehouse) Forget(ref TableRef) { delete(w.tables, ref) }

// Change is DDL a batch needs: a table to create (Create, with all of Cols
// in order) or columns to append to an existing table.
type Change struct {
	Table  TableRef
	Create bool
	Cols   []ColumnDef
}

func (c Change) String() string {
	verb := "add columns to"
	if c.Create {
		verb = "create"
	}
	return fmt.Sprintf("%s %s (%d columns)", verb, c.Table, len(c.Cols))
}

// leading columns of every new table, in this order (SPEC §4).
var leadingCols = []ColumnDef{{"id", Text}, {"received_at", Timestamptz}, {"uuid_ts", Timestamptz}}

// Plan returns the DDL the batch needs against w: tables it does not know
// and columns it lacks, each new column typed by the widening rule over the
// batch's non-null values for it (SPEC §7), in first-seen order, never past
// MaxColumns. Plan does not modify w or b.
func Plan(w *Warehouse, b *Batch) []Change {
	var out []Change
	for _, tr := range b.Tables {
		def := w.tables[tr.Table]
		have := 0
		if def != nil {
			have = len(def.Cols)
		}
		var order []string
		types := make(map[string]Type)
		var g *ColumnIndex
		if def != nil {
			g = def.ColumnIndex()
		}
		for ri := range tr.Rows {
			if g != nil {
				g.Row(len(tr.Rows[ri].Cols))
			}
			for k, c := range tr.Rows[ri].Cols {
				if c.Val.IsNull() {
					continue
				}
				if g != nil && g.Find(k, c.Name) >= 0 {
					continue
				}
				if c.Val.Kind == KindNumber && !validNumeric(c.Val.Str) {
					// No column type can hold it: it will be a discard,
					// and a column is made only for a storable value.
					continue
				}
				t, seen := types[c.Name]
				if !seen {
					order = append(order, c.Name)
					types[c.Name] = c.Val.Type()
					continue
				}
				types[c.Name] = Widen(t, c.Val.Type())
			}
		}
		if g != nil {
			def.PutColumnIndex(g)
		}
		if def == nil {
			ch := Change{Table: tr.Table, Create: true}
			ch.Cols = append(ch.Cols, leadingCols...)
			for _, n := range order {
				if n == "id" || n == "received_at" || n == "uuid_ts" {
					continue
				}
				if len(ch.Cols) >= MaxColumns {
					break
				}
				ch.Cols = append(ch.Cols, ColumnDef{n, types[n]})
			}
			out = append(out, ch)
			continue
		}
		if len(order) == 0 {
			continue
		}
		ch := Change{Table: tr.Table}
		for _, n := range order {
			if have+len(ch.Cols) >= MaxColumns {
				break
			}
			ch.Cols = append(ch.Cols, ColumnDef{n, types[n]})
		}
		if len(ch.Cols) > 0 {
			out = append(out, ch)
		}
	}
	return out
}

// Widen returns the narrowest type that holds values of both a and b:
// bigint with numeric gives numeric, any other mix gives text.
func Widen(a, b Type) Type {
	switch {
	case a == b:
		return a
	case a == TypeUnknown:
		return b
	case b == TypeUnknown:
		return a
	case (a == BigInt && b == Numeric) || (a == Numeric && b == BigInt):
		return Numeric
	}
	return Text
}

// Conform casts every value in b to the type of its column in w (SPEC §7).
// A value that cannot be cast, or whose column does not exist (the table is
// at MaxColumns), is removed from its row and kept as a discard in
// b.Discards. Every table of b must be known to w (run Plan's changes
// first). Conform sets each table's Present and returns the number of
// values discarded.
func Conform(w *Warehouse, b *Batch) int {
	n, _ := conform(w, b, false)
	return n
}

// ConformKnown is Conform for a batch that needs no DDL, the steady
// state, in one pass instead of Plan's and then Conform's: it stops at
// the first value whose table or column w does not have, returning
// false, and then Plan must run, its changes be applied and Conform run.
// The values it cast before stopping stay cast: casting a value to its
// column's type again leaves it as it is, and Plan's changes only add
// tables and columns, so that Conform's result is the same.
func ConformKnown(w *Warehouse, b *Batch) (discarded int, ok bool) {
	return conform(w, b, true)
}

func conform(w *Warehouse, b *Batch, known bool) (int, bool) {
	n := 0
	for _, tr := range b.Tables {
		def := w.tables[tr.Table]
		var g *ColumnIndex
		if def != nil {
			tr.Present = make([]bool, len(def.Cols))
			g = def.ColumnIndex()
		} else {
			if known && len(tr.Rows) > 0 {
				return n, false
			}
			tr.Present = nil
		}
		for ri := range tr.Rows {
			row := &tr.Rows[ri]
			// Rows may share column memory (a track's tracks row is a prefix
			// of its event row), so never write into row.Cols: copy on the
			// first change.
			if g != nil {
				g.Row(len(row.Cols))
			}
			var kept []Col
			changed := false
			msg := ""
			if tr.Merge {
				msg = MergeMessage(row.Key)
			}
			change := func(i int) {
				if !changed {
					changed = true
					kept = make([]Col, i, len(row.Cols))
					copy(kept, row.Cols[:i])
				}
			}
			for i, c := range row.Cols {
				if c.Val.IsNull() {
					change(i)
					continue
				}
				j := -1
				if g != nil {
					j = g.Find(i, c.Name)
				}
				if j < 0 {
					if known {
						// Keep what this row's earlier values became:
						// their discards are already in b.Discards.
						if changed {
							row.Cols = append(kept, row.Cols[i:]...)
						}
						return n, false
					}
					change(i)
					n++
					reason, code := fmt.Sprintf("table has reached the limit of %d columns", MaxColumns), "column_limit"
					if _, err := Cast(c.Val, c.Val.Type()); err != nil {
						reason, code = err.Error(), "cast" // no column was made for it (see Plan)
					}
					b.Discards = append(b.Discards, Discard{
						Schema: tr.Table.Schema, Table: tr.Table.Table, RowID: row.ID, Column: c.Name,
						Value: c.Val.Text(), Reason: reason, Code: code, ReceivedAt: row.ReceivedAt, Message: msg,
					})
					continue
				}
				v, err := Cast(c.Val, def.Cols[j].Type)
				if err != nil {
					change(i)
					n++
					b.Discards = append(b.Discards, Discard{
						Schema: tr.Table.Schema, Table: tr.Table.Table, RowID: row.ID, Column: c.Name,
						Value: c.Val.Text(), Reason: err.Error(), Code: "cast", ReceivedAt: row.ReceivedAt, Message: msg,
					})
					continue
				}
				tr.Present[j] = true
				if v != c.Val {
					change(i)
				}
				if changed {
					kept = append(kept, Col{Name: c.Name, Val: v})
				}
			}
			if changed {
				row.Cols = kept
			}
		}
		if g != nil {
			def.PutColumnIndex(g)
		}
	}
	return n, true
}

// ColumnIndex finds the columns of rows in a name → position index. Rows
// of a table mostly share a few layouts (a track's context from the web or
// from a phone), which a row's column count tells apart, so the previous
// row of the same count is the best guess for this row's k-th column: a
// string compare (often of the same pointer, names being interned by the
// decoder) instead of a map lookup. Call Row before each row's columns.
type ColumnIndex struct {
	index map[string]int
	byLen map[int]*layoutGuess
	cur   *layoutGuess
}

type layoutGuess struct {
	names []string
	pos   []int
}

// NewColumnIndex finds columns in index.
func NewColumnIndex(index map[string]int) *ColumnIndex {
	return &ColumnIndex{index: index, byLen: make(map[int]*layoutGuess)}
}

// ColumnIndexes hands out ColumnIndexes over one index, each with the
// guesses of the one last given back (Put): a table's next flush mostly
// brings rows of the layouts of its last one, so even its first row finds
// its columns without a map lookup. That matters for a flush over
// thousands of tables of a few rows each. Safe for concurrent use; each
// caller gets its own. The zero value needs its index set (NewColumnIndexes).
type ColumnIndexes struct {
	index map[string]int
	spare atomic.Pointer[ColumnIndex]
}

// NewColumnIndexes hands out ColumnIndexes over index.
func NewColumnIndexes(index map[string]int) *ColumnIndexes {
	return &ColumnIndexes{index: index}
}

// Get returns the ColumnIndex last given back, or a new one.
func (c *ColumnIndexes) Get() *ColumnIndex {
	if g := c.spare.Swap(nil); g != nil {
		return g
	}
	return NewColumnIndex(c.index)
}

// Put gives back g, from Get, for the next caller.
func (c *ColumnIndexes) Put(g *ColumnIndex) { c.spare.Store(g) }

// ColumnIndex returns a ColumnIndex over t's columns (ColumnIndexes.Get).
func (t *TableDef) ColumnIndex() *ColumnIndex { return t.finds.Get() }

// PutColumnIndex gives back g, from ColumnIndex, for the next caller.
func (t *TableDef) PutColumnIndex(g *ColumnIndex) { t.finds.Put(g) }

// Reset makes g find columns in index, forgetting its guesses.
func (g *ColumnIndex) Reset(index map[string]int) {
	g.index = index
	for _, l := range g.byLen {
		clear(l.names) // an empty name never matches
	}
	g.cur = nil
}

// maxLayoutGuesses bounds a ColumnIndex's guesses, kept from flush to
// flush: past it they start again.
const maxLayoutGuesses = 32

// Row starts a row of n columns.
func (g *ColumnIndex) Row(n int) {
	g.cur = g.byLen[n]
	if g.cur == nil {
		if len(g.byLen) >= maxLayoutGuesses {
			clear(g.byLen)
		}
		g.cur = &layoutGuess{names: make([]string, n), pos: make([]int, n)}
		g.byLen[n] = g.cur
	}
}

// Find returns the position of column name, the k-th of its row; -1 when
// the index lacks it.
func (g *ColumnIndex) Find(k int, name string) int {
	l := g.cur
	if k < len(l.names) && l.names[k] == name && name != "" {
		return l.pos[k]
	}
	j, ok := g.index[name]
	if !ok {
		j = -1
	}
	if k < len(l.names) {
		l.names[k], l.pos[k] = name, j
	}
	return j
}
