package schema

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var whRef = TableRef{Schema: "web", Table: "e"}

func batchOf(rows ...[]Col) *Batch {
	b := &Batch{Tables: []*TableRows{{Table: whRef}}}
	for i, cols := range rows {
		id := fmt.Sprintf("m%d", i)
		all := append([]Col{{"id", strVal(id)}, {"received_at", timeVal(kafkaTS)}}, cols...)
		b.Tables[0].Rows = append(b.Tables[0].Rows, Row{ID: id, ReceivedAt: kafkaTS, Cols: all})
	}
	return b
}

func apply(w *Warehouse, changes []Change) {
	for _, ch := range changes {
		def := w.Table(ch.Table)
		var cols []ColumnDef
		if def != nil {
			cols = def.Cols
		}
		w.Set(NewTableDef(ch.Table, append(append([]ColumnDef(nil), cols...), ch.Cols...)))
	}
}

func colsOf(def *TableDef) string {
	var s []string
	for _, c := range def.Cols {
		s = append(s, c.Name+" "+c.Type.SQL())
	}
	return strings.Join(s, ", ")
}

func TestPlanNewTableLeadingColumnsAndWidening(t *testing.T) {
	t.Parallel()
	num := Value{Kind: KindNumber, Str: "1.5"}
	integer := Value{Kind: KindInt, Int: 1}
	b := batchOf(
		[]Col{{"a", integer}, {"b", integer}, {"c", strVal("x")}},
		[]Col{{"a", num}, {"b", strVal("y")}, {"d", BoolValue(true)}},
		[]Col{{"e", Value{}}}, // NULL makes no column
	)
	w := NewWarehouse()
	changes := Plan(w, b)
	if len(changes) != 1 || !changes[0].Create {
		t.Fatalf("changes %+v", changes)
	}
	apply(w, changes)
	want := "id text, received_at timestamp with time zone, uuid_ts timestamp with time zone, a numeric, b text, c text, d boolean"
	if got := colsOf(w.Table(whRef)); got != want {
		t.Fatalf("columns\n got %s\nwant %s", got, want)
	}
	if again := Plan(w, b); len(again) != 0 {
		t.Fatalf("second plan %+v", again)
	}
	// A later batch appends only the new column, at the end.
	apply(w, Plan(w, batchOf([]Col{{"z", strVal("1")}, {"a", strVal("not a number")}})))
	if got := colsOf(w.Table(whRef)); got != want+", z text" {
		t.Fatalf("after append: %s", got)
	}
}

// SPEC §12 example 8.
func TestSpecExample8PriceCasts(t *testing.T) {
	t.Parallel()
	w := NewWarehouse()
	first := batchOf([]Col{{"price", Value{Kind: KindInt, Int: 10, Str: "10"}}})
	apply(w, Plan(w, first))
	if typ, _ := w.Table(whRef).Column("price"); typ != BigInt {
		t.Fatalf("price is %s", typ)
	}
	b := batchOf(
		[]Col{{"price", Value{Kind: KindNumber, Str: "10.75"}}},
		[]Col{{"price", strVal("abc")}},
		[]Col{{"price", strVal("42")}},
	)
	if ch := Plan(w, b); len(ch) != 0 {
		t.Fatalf("no DDL expected, got %+v", ch)
	}
	if n := Conform(w, b); n != 1 {
		t.Fatalf("discarded %d", n)
	}
	got := []string{}
	for _, r := range b.Tables[0].Rows {
		v := "NULL"
		for _, c := range r.Cols {
			if c.Name == "price" {
				if c.Val.Kind != KindInt {
					t.Errorf("price kind %v", c.Val.Kind)
				}
				v = c.Val.Text()
			}
		}
		got = append(got, v)
	}
	if strings.Join(got, ",") != "10,NULL,42" {
		t.Fatalf("prices %v", got)
	}
	d := b.Discards[0]
	if d.Column != "price" || d.Value != "abc" || d.RowID != "m1" || d.Table != "e" || d.Schema != "web" || !strings.Contains(d.Reason, "bigint") {
		t.Fatalf("discard %+v", d)
	}
}

func TestColumnLimit(t *testing.T) {
	t.Parallel()
	var cols []Col
	for i := 0; i < MaxColumns+20; i++ {
		cols = append(cols, Col{fmt.Sprintf("p%04d", i), strVal("v")})
	}
	b := batchOf(cols)
	w := NewWarehouse()
	apply(w, Plan(w, b))
	if n := len(w.Table(whRef).Cols); n != MaxColumns {
		t.Fatalf("table has %d columns", n)
	}
	// id, received_at, uuid_ts take 3 of the 1,500; id and received_at are
	// in the row, so 1,500+2 values compete for 1,497 property columns.
	if n := Conform(w, b); n != MaxColumns+20-(MaxColumns-3) {
		t.Fatalf("discarded %d", n)
	}
	if !strings.Contains(b.Discards[0].Reason, "limit of 1500 columns") {
		t.Fatalf("reason %q", b.Discards[0].Reason)
	}
}

func TestBatchBuilderDedupAndOffsets(t *testing.T) {
	t.Parallel()
	dec, _ := NewDecoder(Config{})
	bb := NewBatchBuilder("g", "owner")
	bb.Start("web", 0, 100)
	for i, js := range []string{
		`{"type":"track","messageId":"dup","userId":"u","event":"E","properties":{"v":1,"名":"x"}}`,
		`{"type":"track","messageId":"dup","userId":"u","event":"E","properties":{"v":2,"名":"y"}}`,
		`{"type":"track","messageId":"other","userId":"u","event":"E","properties":{"v":3}}`,
	} {
		bb.Add(dec.Decode(&Record{Topic: "web", Partition: 0, Offset: int64(100 + i), Timestamp: kafkaTS, Value: []byte(js)}))
	}
	bb.Add(dec.Decode(&Record{Topic: "web", Partition: 3, Offset: 7, Timestamp: kafkaTS, Value: []byte(`nope`)}))
	b := bb.Batch()
	if bb.Rows() != 4 {
		t.Fatalf("rows %d", bb.Rows())
	}
	for _, tr := range b.Tables {
		if tr.Table.Table == "e" && tr.Rows[0].Cols[len(tr.Rows[0].Cols)-1].Val.Int != 1 {
			t.Fatalf("first copy must win: %+v", tr.Rows[0])
		}
	}
	if len(b.Discards) != 1 || b.Discards[0].Value != "x" {
		t.Fatalf("discards of the dropped duplicate must go with it: %+v", b.Discards)
	}
	if len(b.Rejected) != 1 || b.Records != 4 {
		t.Fatalf("rejected %d records %d", len(b.Rejected), b.Records)
	}
	want := []OffsetAdvance{{"web", 0, 100, 103}, {"web", 3, -1, 8}}
	if fmt.Sprint(b.Offsets) != fmt.Sprint(want) {
		t.Fatalf("offsets %v want %v", b.Offsets, want)
	}
}

// A message whose id is already in the batch is ignored whole (SPEC §11):
// its event rows, its users call and its discards, while the first copy
// keeps its own discards, also when both copies are in one batch envelope.
func TestBatchBuilderDuplicateMessage(t *testing.T) {
	t.Parallel()
	dec, _ := NewDecoder(Config{})
	bb := NewBatchBuilder("g", "owner")
	bb.Add(dec.Decode(&Record{Topic: "web", Offset: 0, Timestamp: kafkaTS, Value: []byte(`{"batch":[
		{"type":"track","messageId":"dup","userId":"u","event":"A","properties":{"v":1,"名":"x"}},
		{"type":"track","messageId":"dup","userId":"u","event":"B","properties":{"v":2,"名":"y"}},
		{"type":"identify","messageId":"i1","userId":"u1","traits":{"plan":"free","名":"z"}}]}`)}))
	bb.Add(dec.Decode(&Record{Topic: "web", Offset: 1, Timestamp: kafkaTS.Add(time.Minute),
		Value: []byte(`{"type":"identify","messageId":"i1","userId":"u1","traits":{"plan":"pro","email":"x@y","名":"w"}}`)}))
	b := bb.Batch()
	got := map[string]int{}
	for _, tr := range b.Tables {
		got[tr.Table.Table] = len(tr.Rows)
		if tr.Table.Table == "users" {
			for _, c := range tr.Rows[0].Cols {
				if c.Name == "plan" && c.Val.Str != "free" {
					t.Errorf("users call of the duplicate kept: plan %q", c.Val.Str)
				}
			}
		}
	}
	// No table b: the duplicate's track event names another table, and
	// it is ignored all the same.
	if want := map[string]int{"tracks": 1, "a": 1, "identifies": 1, "users": 1}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rows per table %v, want %v", got, want)
	}
	var vals []string
	for _, d := range b.Discards {
		vals = append(vals, d.Value)
	}
	if fmt.Sprint(vals) != "[x z]" {
		t.Errorf("discards %v, want the first copies' [x z]", vals)
	}
}

// A builder that expects the previous batch's sizes builds the same batch,
// with each expected table's rows allocated at its size.
func TestBatchBuilderExpect(t *testing.T) {
	t.Parallel()
	dec, _ := NewDecoder(Config{})
	build := func(sz Sizes, from, n int) *Batch {
		bb := NewBatchBuilder("g", "owner")
		bb.Expect(sz)
		for i := from; i < from+n; i++ {
			js := fmt.Sprintf(`{"type":"track","messageId":"m%d","userId":"u%d","event":"E%d","properties":{"v":%d}}`, i%7, i%3, i%2, i)
			if i%5 == 0 {
				js = fmt.Sprintf(`{"type":"identify","messageId":"i%d","userId":"u%d","traits":{"n":%d}}`, i, i%3, i)
			}
			bb.Add(dec.Decode(&Record{Topic: "web", Partition: 0, Offset: int64(i), Timestamp: kafkaTS, Value: []byte(js)}))
		}
		return bb.Batch()
	}
	first := build(nil, 0, 40)
	sz := first.Sizes()
	// users holds a row per identify call (eight, for three users): the
	// sink merges them.
	if sz[TableRef{"web", "tracks"}] != 7 || sz[TableRef{"web", "users"}] != 8 || len(sz) != len(first.Tables) {
		t.Fatalf("sizes %v", sz)
	}
	grown, expected := build(nil, 3, 30), build(sz, 3, 30)
	if !reflect.DeepEqual(grown.Tables, expected.Tables) || !reflect.DeepEqual(grown.Discards, expected.Discards) {
		t.Fatalf("expecting sizes changed the batch:\n%+v\n%+v", grown.Tables, expected.Tables)
	}
	for _, tr := range expected.Tables {
		// Appending never outgrew the expected size, so the rows are the
		// one allocation made for it.
		if want := sz[tr.Table]; len(tr.Rows) > want || cap(tr.Rows) != want {
			t.Errorf("%s: %d rows allocated for %d, want %d", tr.Table, len(tr.Rows), cap(tr.Rows), want)
		}
	}
}

// users merge: the result does not depend on arrival order (SPEC §11, §12
// example 3), both inside one batch and across batches.
func TestUsersMergeOrderIndependent(t *testing.T) {
	t.Parallel()
	dec, _ := NewDecoder(Config{})
	msgs := []string{
		`{"type":"identify","messageId":"i1","userId":"u1","receivedAt":"2024-01-01T00:00:01Z","traits":{"first_time_shopper":true,"plan":"free"}}`,
		`{"type":"identify","messageId":"i2","userId":"u1","receivedAt":"2024-01-01T00:00:02Z","traits":{"total_revenue_180_days":450.5,"plan":null}}`,
		`{"type":"identify","messageId":"i3","userId":"u1","receivedAt":"2024-01-01T00:00:03Z","traits":{"plan":"pro"},"context":{"ip":"9.9.9.9"}}`,
		`{"type":"identify","messageId":"i4","userId":"u1","receivedAt":"2024-01-01T00:00:00Z","traits":{"plan":"oldest","first_time_shopper":false}}`,
	}
	render := func(cols []Col) string {
		m := map[string]string{}
		for _, c := range cols {
			m[c.Name] = c.Val.Text()
		}
		return fmt.Sprint(m)
	}
	var want string
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 24; trial++ {
		order := rng.Perm(len(msgs))
		// In one batch.
		bb := NewBatchBuilder("g", "o")
		var stored []Col
		var storedKeys map[string]string
		for i, k := range order {
			d := dec.Decode(&Record{Topic: "web", Offset: int64(i), Timestamp: kafkaTS, Value: []byte(msgs[k])})
			bb.Add(d)
			// Across batches: one message per batch through MergeRow.
			for _, r := range d.Rows {
				if r.Merge {
					keys := map[string]string{}
					for _, c := range r.Row.Cols {
						keys[c.Name] = r.Row.Key
					}
					stored, storedKeys = MergeRow(stored, storedKeys, r.Row, keys)
				}
			}
		}
		var users *TableRows
		for _, tr := range bb.Batch().Tables {
			if tr.Merge {
				users = tr
			}
		}
		if len(users.Rows) != len(msgs) {
			t.Fatalf("users rows %d, want one per call", len(users.Rows))
		}
		won, _ := MergeCalls(nil, users.Rows...)
		inBatch := render(won)
		across := render(stored)
		if want == "" {
			want = inBatch
			for _, s := range []string{"first_time_shopper:true", "plan:pro", "total_revenue_180_days:450.5", "context_ip:9.9.9.9", "received_at:2024-01-01T00:00:03Z"} {
				if !strings.Contains(want, s) {
					t.Fatalf("merged row %s lacks %s", want, s)
				}
			}
		}
		if inBatch != want || across != want {
			t.Fatalf("order %v:\n in batch %s\n across   %s\n want     %s", order, inBatch, across, want)
		}
	}
}

func TestMergeKeyOrdersByTimeThenID(t *testing.T) {
	t.Parallel()
	t0 := time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	if !(MergeKey(t0, "z") < MergeKey(t1, "a")) || !(MergeKey(t1, "a") < MergeKey(t1, "b")) {
		t.Fatal("keys out of order")
	}
}

// A NULL in the first call of a batch must not win over an older call's
// value (the sink's review found this).
func TestMergeNullDoesNotWin(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	row := func(at time.Time, id string, cols ...Col) *Decoded {
		all := append([]Col{{"id", strVal("u1")}, {"received_at", timeVal(at)}}, cols...)
		return &Decoded{Rows: []TableRow{{Table: TableRef{"web", "users"}, Merge: true, Row: Row{ID: "u1", ReceivedAt: at, Cols: all, Key: MergeKey(at, id)}}}}
	}
	bb := NewBatchBuilder("g", "o")
	bb.Add(row(t0.Add(2*time.Minute), "late", Col{"name", Value{}}))
	bb.Add(row(t0, "early", Col{"name", strVal("Ann")}))
	won, _ := MergeCalls(nil, bb.Batch().Tables[0].Rows...)
	got := ""
	for _, c := range won {
		if c.Name == "name" {
			got = c.Val.Text()
		}
	}
	if got != "Ann" {
		t.Fatalf("name = %q, want Ann", got)
	}
}

// TestConformPresentAndLayouts conforms rows of changing layouts (the
// column guess of one row misleads the next) and checks every cast and
// Present: a column is present only when some row keeps a value for it.
func TestConformPresentAndLayouts(t *testing.T) {
	t.Parallel()
	w := NewWarehouse()
	apply(w, Plan(w, batchOf(
		[]Col{{"a", Value{Kind: KindInt, Int: 1}}, {"b", strVal("x")}, {"c", Value{Kind: KindInt, Int: 2}}, {"d", strVal("y")}},
	)))
	b := batchOf(
		[]Col{{"a", Value{Kind: KindInt, Int: 5}}, {"b", strVal("p")}},
		[]Col{{"b", strVal("q")}, {"a", strVal("6")}},              // swapped: the guess is wrong at every position
		[]Col{{"c", strVal("not a number")}},                       // only c's value is discarded
		[]Col{{"b", Value{Kind: KindInt, Int: 7}}, {"a", Value{}}}, // a NULL
	)
	if n := Conform(w, b); n != 1 {
		t.Fatalf("discarded %d, want 1 (c)", n)
	}
	tr := b.Tables[0]
	def := w.Table(whRef)
	got := map[string]bool{}
	for i, p := range tr.Present {
		if p {
			got[def.Cols[i].Name] = true
		}
	}
	want := map[string]bool{"id": true, "received_at": true, "a": true, "b": true}
	if len(tr.Present) != len(def.Cols) || !maps.Equal(got, want) {
		t.Errorf("present %v (of %d columns), want %v", got, len(tr.Present), want)
	}
	vals := func(r Row) map[string]Value {
		m := map[string]Value{}
		for _, c := range r.Cols {
			m[c.Name] = c.Val
		}
		return m
	}
	if v := vals(tr.Rows[1]); v["a"].Kind != KindInt || v["a"].Int != 6 || v["b"].Str != "q" {
		t.Errorf("row 2 after Conform: %v; want a = 6 (bigint), b = q", v)
	}
	if v := vals(tr.Rows[3]); v["b"].Kind != KindString || v["b"].Str != "7" {
		t.Errorf("row 4 after Conform: %v; want b = \"7\" (text)", v)
	}
	if _, ok := vals(tr.Rows[2])["c"]; ok {
		t.Errorf("row 3 kept c after its cast failed")
	}
}

// TestColumnIndex finds columns through alternating layouts, two layouts
// of one length (the guess is wrong) and names the index lacks.
func TestColumnIndex(t *testing.T) {
	t.Parallel()
	index := map[string]int{"id": 0, "a": 1, "b": 2, "c": 3, "d": 4}
	g := NewColumnIndex(index)
	rows := [][]string{
		{"id", "a", "b"},
		{"id", "c", "d", "a"},
		{"id", "a", "b"},
		{"id", "b", "a"},      // same length as the first layout, other order
		{"id", "x", "c"},      // x is unknown
		{"id", "c", "d", "a"}, // the second layout again
		{"", "a"},
	}
	for ri, names := range rows {
		g.Row(len(names))
		for k, n := range names {
			want, ok := index[n]
			if !ok {
				want = -1
			}
			if got := g.Find(k, n); got != want {
				t.Errorf("row %d column %d %q: Find = %d, want %d", ri, k, n, got, want)
			}
		}
	}
}

// TestMergeRowColumns: a stored column is replaced in place when the
// incoming key is greater (also a stored column without a key), kept when
// its key is newer; new columns are appended once, even when the incoming
// row names one twice; a NULL never wins.
func TestMergeRowColumns(t *testing.T) {
	t.Parallel()
	stored := []Col{{"a", strVal("old-a")}, {"b", strVal("old-b")}, {"nokey", strVal("old-n")}}
	storedKeys := map[string]string{"a": "k1", "b": "k9"}
	in := Row{Key: "k5", Cols: []Col{
		{"a", strVal("new-a")}, {"b", strVal("new-b")}, {"nokey", strVal("new-n")},
		{"c", strVal("c1")}, {"c", strVal("c2")}, {"d", Value{}},
	}}
	out, keys := MergeRow(stored, storedKeys, in, nil)
	got := map[string]string{}
	for _, c := range out {
		if _, dup := got[c.Name]; dup {
			t.Errorf("column %s twice in %v", c.Name, out)
		}
		got[c.Name] = c.Val.Text()
	}
	want := map[string]string{"a": "new-a", "b": "old-b", "nokey": "new-n", "c": "c1"}
	if !maps.Equal(got, want) {
		t.Errorf("merged %v, want %v", got, want)
	}
	if wantKeys := map[string]string{"a": "k5", "b": "k9", "nokey": "k5", "c": "k5"}; !maps.Equal(keys, wantKeys) {
		t.Errorf("keys %v, want %v", keys, wantKeys)
	}
	if out[0].Name != "a" || out[1].Name != "b" || out[2].Name != "nokey" {
		t.Errorf("stored columns moved: %v", out)
	}
}

// Reset forgets the guesses made with the previous index: the same row
// layout finds its columns where the new index puts them.
func TestColumnIndexReset(t *testing.T) {
	t.Parallel()
	g := NewColumnIndex(map[string]int{"a": 0, "b": 1})
	find := func() []int {
		g.Row(3)
		return []int{g.Find(0, "a"), g.Find(1, "b"), g.Find(2, "c")}
	}
	if got := find(); !slices.Equal(got, []int{0, 1, -1}) {
		t.Fatalf("first index: %v", got)
	}
	g.Reset(map[string]int{"a": 2, "b": 0, "c": 1})
	for range 2 {
		if got := find(); !slices.Equal(got, []int{2, 0, 1}) {
			t.Fatalf("after Reset: %v, want [2 0 1]", got)
		}
	}
}

// A table's ColumnIndex comes back with the guesses of the one last given
// back; two callers never share one; the guesses kept stay bounded.
func TestTableDefColumnIndex(t *testing.T) {
	t.Parallel()
	def := NewTableDef(TableRef{"s", "t"}, []ColumnDef{{"a", Text}, {"b", BigInt}})
	g := def.ColumnIndex()
	g.Row(2)
	if g.Find(0, "a") != 0 || g.Find(1, "b") != 1 {
		t.Fatal("Find on a new index")
	}
	if other := def.ColumnIndex(); other == g {
		t.Fatal("a second caller got the index in use")
	}
	def.PutColumnIndex(g)
	g2 := def.ColumnIndex()
	if g2 != g {
		t.Fatal("the index given back was not handed out again")
	}
	if l := g2.byLen[2]; l == nil || !slices.Equal(l.names, []string{"a", "b"}) || !slices.Equal(l.pos, []int{0, 1}) {
		t.Fatalf("the guesses did not come back with it: %+v", g2.byLen[2])
	}
	if def.ColumnIndex() == g2 {
		t.Fatal("the index given back was handed out twice")
	}
	for n := range 3 * maxLayoutGuesses {
		g2.Row(n + 3)
	}
	if len(g2.byLen) > maxLayoutGuesses {
		t.Fatalf("%d layouts kept, want at most %d", len(g2.byLen), maxLayoutGuesses)
	}
	g2.Row(2)
	if g2.Find(0, "a") != 0 || g2.Find(1, "b") != 1 || g2.Find(1, "zz") != -1 {
		t.Fatal("Find after the guesses started again")
	}
}

// ConformKnown then, when it stops, Plan, the changes and Conform give
// what Plan, the changes and Conform give: the same values, the same
// discards, none twice.
func TestConformKnown(t *testing.T) {
	t.Parallel()
	intVal := func(i int64) Value { return Value{Kind: KindInt, Int: i, Str: fmt.Sprint(i)} }
	// The table has price bigint and note text.
	base := func() *Warehouse {
		w := NewWarehouse()
		apply(w, Plan(w, batchOf([]Col{{"price", intVal(1)}, {"note", strVal("x")}})))
		return w
	}
	rows := func(extra bool) *Batch {
		second := []Col{{"price", strVal("abc")}, {"note", strVal("y")}}
		if extra {
			// A cast failure before the new column in the same row.
			second = append(second, Col{"fresh", strVal("new")})
		}
		return batchOf(
			[]Col{{"price", strVal("42")}, {"note", strVal("a")}},
			second,
			[]Col{{"price", Value{Kind: KindNumber, Str: "7"}}},
		)
	}
	dump := func(b *Batch) string {
		var sb strings.Builder
		for _, r := range b.Tables[0].Rows {
			for _, c := range r.Cols {
				fmt.Fprintf(&sb, "%s=%v:%s ", c.Name, c.Val.Kind, c.Val.Text())
			}
			sb.WriteString("| ")
		}
		for _, d := range b.Discards {
			fmt.Fprintf(&sb, "discard %s/%s %q %s; ", d.RowID, d.Column, d.Value, d.Code)
		}
		return sb.String()
	}
	for _, extra := range []bool{false, true} {
		wantW, wantB := base(), rows(extra)
		apply(wantW, Plan(wantW, wantB))
		Conform(wantW, wantB)

		w, b := base(), rows(extra)
		_, ok := ConformKnown(w, b)
		if ok == extra {
			t.Errorf("extra column %v: ConformKnown ok = %v", extra, ok)
		}
		if !ok {
			apply(w, Plan(w, b))
			Conform(w, b)
		}
		if got, want := dump(b), dump(wantB); got != want {
			t.Errorf("extra column %v:\n got %s\nwant %s", extra, got, want)
		}
		if len(b.Discards) != 1 {
			t.Errorf("extra column %v: %d discards, want 1 (price abc)", extra, len(b.Discards))
		}
	}
	// A table the warehouse does not have stops it too.
	b := batchOf([]Col{{"price", intVal(1)}})
	if _, ok := ConformKnown(NewWarehouse(), b); ok {
		t.Error("ConformKnown accepted a table the warehouse does not have")
	}
}
