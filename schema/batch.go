package schema

import (
	"strconv"
	"strings"
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
	seen map[string]struct{} // event tables: the ids in the batch
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
// offset order. A message whose id is already in the batch is ignored, its
// rows and discards with it (SPEC §11: the first by offset wins); merge
// rows are appended one per call, for the sink to merge.
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
	if d.ends == nil {
		bb.addMessage(d.Rows, d.Discards)
		return
	}
	var rows, discards int
	for _, e := range d.ends {
		bb.addMessage(d.Rows[rows:e.rows], d.Discards[discards:e.discards])
		rows, discards = e.rows, e.discards
	}
}

// addMessage appends one message's rows and discards, unless the message
// is a duplicate: its first event row's id is already in its table.
func (bb *BatchBuilder) addMessage(rows []TableRow, discards []Discard) {
	for ri := range rows {
		if tr := &rows[ri]; !tr.Merge {
			if bt := bb.tables[tr.Table]; bt != nil {
				if _, dup := bt.seen[tr.Row.ID]; dup {
					return
				}
			}
			break
		}
	}
	for ri := range rows {
		tr := &rows[ri]
		bt := bb.tables[tr.Table]
		if bt == nil {
			n := bb.expect[tr.Table]
			bt = &builderTable{rows: &TableRows{Table: tr.Table, Merge: tr.Merge, Rows: make([]Row, 0, n)}}
			if !tr.Merge {
				bt.seen = make(map[string]struct{}, n)
			}
			bb.tables[tr.Table] = bt
			bb.b.Tables = append(bb.b.Tables, bt.rows)
		}
		if !tr.Merge {
			if _, dup := bt.seen[tr.Row.ID]; dup {
				continue
			}
			bt.seen[tr.Row.ID] = struct{}{}
		}
		bt.rows.Rows = append(bt.rows.Rows, tr.Row)
	}
	bb.b.Discards = append(bb.b.Discards, discards...)
}

// MergeSource is the event table whose calls make the rows of the merge
// table t: identifies for users, groups for accounts.
func MergeSource(t TableRef) TableRef {
	switch t.Table {
	case "users":
		t.Table = "identifies"
	case "accounts":
		t.Table = "groups"
	}
	return t
}

// MergeMessage is the id of the message a merge row came from, read from
// its key (see MergeKey).
func MergeMessage(key string) string {
	if i := strings.IndexByte(key, '|'); i >= 0 {
		return key[i+1:]
	}
	return ""
}

// MergeCalls folds the calls of one users/accounts id (rows with the same
// ID, their values cast) into the columns they win over the stored keys
// (nil when the row is new), and returns those columns with the keys
// after them. The order of calls does not matter: a column goes to the
// greatest key, and a NULL never wins one (SPEC §11).
func MergeCalls(storedKeys map[string]string, calls ...Row) ([]Col, map[string]string) {
	var won []Col
	keys := storedKeys
	for _, c := range calls {
		won, keys = MergeRow(won, keys, c, nil)
	}
	if keys == nil {
		keys = map[string]string{}
	}
	return won, keys
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
