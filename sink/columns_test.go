package sink

import (
	"slices"
	"testing"

	"github.com/segwarehouse/segwarehouse/schema"
)

// TestPresentColumnsMatchCopyColumns: the columns written for an event
// table, taken from what Conform found present, are those copyColumns finds
// by reading the rows: in the table's order, uuid_ts last.
func TestPresentColumnsMatchCopyColumns(t *testing.T) {
	t.Parallel()
	ref := schema.TableRef{Schema: "s", Table: "e"}
	def := schema.NewTableDef(ref, []schema.ColumnDef{
		{Name: "id", Type: schema.Text}, {Name: "received_at", Type: schema.Timestamptz}, {Name: "uuid_ts", Type: schema.Timestamptz},
		{Name: "a", Type: schema.BigInt}, {Name: "b", Type: schema.Text}, {Name: "c", Type: schema.Numeric}, {Name: "d", Type: schema.Boolean},
	})
	w := schema.NewWarehouse()
	w.Set(def)
	row := func(id string, cols ...schema.Col) schema.Row {
		return schema.Row{ID: id, ReceivedAt: t0, Cols: append([]schema.Col{col("id", vStr(id)), col("received_at", vTime(t0))}, cols...)}
	}
	b := &schema.Batch{Tables: []*schema.TableRows{{Table: ref, Rows: []schema.Row{
		row("m1", col("b", vStr("x")), col("a", schema.Value{})),
		row("m2", col("d", vBool(true))),
		row("m3", col("a", vStr("not a number"))),
	}}}}
	schema.Conform(w, b)
	tr := b.Tables[0]
	wantNames, wantTypes := copyColumns(def, tr.Rows)
	names, types := presentColumns(def, tr.Present)
	if !slices.Equal(names, wantNames) || !slices.Equal(types, wantTypes) {
		t.Errorf("presentColumns %v %v, copyColumns %v %v", names, types, wantNames, wantTypes)
	}
	if want := []string{"id", "received_at", "b", "d", "uuid_ts"}; !slices.Equal(names, want) {
		t.Errorf("columns %v, want %v", names, want)
	}
}
