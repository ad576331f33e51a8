package schema

import (
	"strconv"
	"time"
)

// MergeKey builds the ordering key of one users/accounts call: received_at
// first (fixed-width UTC microseconds, so keys compare as strings), the
// message id as the tie-break, so that the merged row does not depend on
// arrival order.
func MergeKey(receivedAt time.Time, messageID string) string {
	us := receivedAt.UTC().UnixMicro()
	// Offset into the positive range so the fixed-width decimal sorts.
	u := uint64(us) + 1<<63
	s := strconv.FormatUint(u, 10)
	const width = 20
	buf := make([]byte, 0, width+1+len(messageID))
	for i := len(s); i < width; i++ {
		buf = append(buf, '0')
	}
	buf = append(buf, s...)
	buf = append(buf, '|')
	buf = append(buf, messageID...)
	return string(buf)
}

// BatchBuilder accumulates decoded records into a Batch. It is not safe for
// concurrent use.
type BatchBuilder struct {
	b       *Batch
	tables  map[TableRef]*builderTable
	offsets map[Pos]int // (topic, partition) → index into b.Offsets; Pos.Offset unused
	expect  Sizes       // rows per table expected (see Expect)
}

// Sizes is the number of rows of each table of a batch.
type Sizes map[TableRef]int

// Sizes returns the number of rows of each of b's tables.
func (b *Batch) Sizes() Sizes {
	sz := make(Sizes, len(b.Tables))
	for _, t := range b.Tables {
		sz[t.Table] = len(t.Rows)
	}
	return sz
}

// Expect sizes the tables of the batch for sz, typically the previous
// batch's sizes: one flush's tables fill to about the next one's, so
// each table's rows and set of ids are allocated once at their size
// instead of grown by doubling. Call it before the first Add.
func (bb *BatchBuilder) Expect(sz Sizes) { bb.expect = sz }

// builderTable is one table of the batch being built.
type builderTable struct {
	rows *TableRows
	seen map[string]int // event tables: id → present; merge tables: id → row index
}

// NewBatchBuilder starts an empty batch fenced by group and owner.
func NewBatchBuilder(group, owner string) *BatchBuilder {
	return &BatchBuilder{
		b:       &Batch{Group: group, Owner: owner},
		tables:  make(map[TableRef]*builderTable),
		offsets: make(map[Pos]int),
	}
}

// Rows is the number of rows in the batch so far.
func (bb *BatchBuilder) Rows() int {
	n := 0
	for _, t := range bb.b.Tables {
		n += len(t.Rows)
	}
	return n
}

// Batch returns the batch built so far. The builder must not be used after.
func (bb *BatchBuilder) Batch() *Batch { return bb.b }

// Start records that the partition's stored offset is from (-1: none) before
// this batch. It must be called before the partition's first Add.
func (bb *BatchBuilder) Start(topic string, partition int32, from int64) {
	k := Pos{Topic: topic, Partition: partition}
	if _, ok := bb.offsets[k]; ok {
		return
	}
	bb.offsets[k] = len(bb.b.Offsets)
	bb.b.Offsets = append(bb.b.Offsets, OffsetAdvance{Topic: topic, Partition: partition, From: from, To: from})
}

// Add appends one decoded record. Records of one partition must be added in
// offset order. Event rows whose id is already in the batch are dropped
// (the first by offset wins); merge rows are merged per column by key.
func (bb *BatchBuilder) Add(d *Decoded) {
	b := bb.b
	k := Pos{Topic: d.Pos.Topic, Partition: d.Pos.Partition}
	i, ok := bb.offsets[k]
	if !ok {
		bb.Start(d.Pos.Topic, d.Pos.Partition, -1)
		i = bb.offsets[k]
	}
	b.Offsets[i].To = d.Pos.Offset + 1
	b.Records++
	b.Messages += d.Messages
	b.Bytes += d.Bytes
	b.Rejected = append(b.Rejected, d.Rejected...)
	// Discards of a row dropped as a duplicate are dropped with it.
	dropped := map[string]bool(nil)
	for ri := range d.Rows {
		tr := &d.Rows[ri]
		bt := bb.tables[tr.Table]
		if bt == nil {
			n := bb.expect[tr.Table]
			bt = &builderTable{rows: &TableRows{Table: tr.Table, Merge: tr.Merge, Rows: make([]Row, 0, n)}, seen: make(map[string]int, n)}
			bb.tables[tr.Table] = bt
			b.Tables = append(b.Tables, bt.rows)
		}
		t, seen := bt.rows, bt.seen
		if !tr.Merge {
			if _, dup := seen[tr.Row.ID]; dup {
				if dropped == nil {
					dropped = make(map[string]bool)
				}
				dropped[tr.Table.Table+"\x00"+tr.Row.ID] = true
				continue
			}
			seen[tr.Row.ID] = len(t.Rows)
			t.Rows = append(t.Rows, tr.Row)
			continue
		}
		if j, ok := seen[tr.Row.ID]; ok {
			mergeInto(&t.Rows[j], t.MergeKeys[j], &tr.Row)
			continue
		}
		seen[tr.Row.ID] = len(t.Rows)
		keys := make(map[string]string, len(tr.Row.Cols))
		row := tr.Row
		row.Cols = make([]Col, 0, len(tr.Row.Cols))
		for _, c := range tr.Row.Cols {
			if c.Val.IsNull() {
				continue // a NULL never wins a column (SPEC §11)
			}
			keys[c.Name] = tr.Row.Key
			row.Cols = append(row.Cols, c)
		}
		t.Rows = append(t.Rows, row)
		t.MergeKeys = append(t.MergeKeys, keys)
	}
	for _, dc := range d.Discards {
		if dropped != nil && dropped[dc.Table+"\x00"+dc.RowID] {
			continue
		}
		b.Discards = append(b.Discards, dc)
	}
}

// mergeInto merges src into dst column by column: a column takes src's
// value when src's key is greater than the key dst holds for it. keys is
// dst's per-column key map and is updated.
func mergeInto(dst *Row, keys map[string]string, src *Row) {
	for _, c := range src.Cols {
		if c.Val.IsNull() {
			continue
		}
		old, have := keys[c.Name]
		if have && old >= src.Key {
			continue
		}
		keys[c.Name] = src.Key
		replaced := false
		for i := range dst.Cols {
			if dst.Cols[i].Name == c.Name {
				dst.Cols[i].Val = c.Val
				replaced = true
				break
			}
		}
		if !replaced {
			dst.Cols = append(dst.Cols, c)
		}
	}
	if src.Key > dst.Key {
		dst.Key = src.Key
	}
	if src.ReceivedAt.After(dst.ReceivedAt) {
		dst.ReceivedAt = src.ReceivedAt
	}
}

// MergeRow merges an incoming row into a stored row: the pure form of the
// users/accounts merge that the sink applies against the warehouse. stored
// and storedKeys describe the row as the warehouse holds it (nil when new);
// the result holds, per column, the value with the greater key. received_at
// is the latest of the two, since keys begin with received_at. Neither input is modified.
func MergeRow(stored []Col, storedKeys map[string]string, in Row, inKeys map[string]string) ([]Col, map[string]string) {
	out := make([]Col, 0, len(stored)+len(in.Cols))
	keys := make(map[string]string, len(storedKeys)+len(in.Cols))
	for k, v := range storedKeys {
		keys[k] = v
	}
	out = append(out, stored...)
	for _, c := range in.Cols {
		if c.Val.IsNull() {
			continue
		}
		k := inKeys[c.Name]
		if k == "" {
			k = in.Key
		}
		if old, have := keys[c.Name]; have && old >= k {
			continue
		}
		keys[c.Name] = k
		// Only a stored column can hold this name already: an incoming
		// name seen before has its key set, the same key, and was skipped
		// above. (Scanning all of out was quadratic in the row's columns.)
		set := false
		for i := range out[:len(stored)] {
			if out[i].Name == c.Name {
				out[i].Val = c.Val
				set = true
				break
			}
		}
		if !set {
			out = append(out, c)
		}
	}
	return out, keys
}
