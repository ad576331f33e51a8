package sink

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/segwarehouse/segwarehouse/schema"
)

// quoteAll quotes as pgx.Identifier.Sanitize does, names with quotes and
// NULs included.
func TestQuoteAll(t *testing.T) {
	t.Parallel()
	names := []string{"plain", `we"ird`, "nul\x00byte", `""`, "", "ünïcode", "a, b"}
	var want []string
	for _, n := range names {
		want = append(want, pgx.Identifier{n}.Sanitize())
	}
	if got := quoteAll(names); got != strings.Join(want, ", ") {
		t.Fatalf("quoteAll = %s, want %s", got, strings.Join(want, ", "))
	}
	if got := quoteAll(nil); got != "" {
		t.Fatalf("quoteAll(nil) = %q", got)
	}
}

// An insert shape is kept while a table's columns stay the same, built
// anew when they change, and the cache stays within maxTableShapes.
func TestInsertShapeCache(t *testing.T) {
	t.Parallel()
	var l Loader
	ref := schema.TableRef{Schema: "s", Table: `t"1`}
	names := []string{"id", "a", "uuid_ts"}
	types := []schema.Type{schema.Text, schema.Timestamptz, schema.Timestamptz}
	sh := l.tableShape(ref, names, types)
	if want := `INSERT INTO "s"."t""1" ("id", "a", "uuid_ts") VALUES `; sh.head != want {
		t.Fatalf("head %q, want %q", sh.head, want)
	}
	if sh.uuidTS != 2 || sh.index["a"] != 1 || len(sh.index) != 2 || sh.oids[1] != pgtype.TimestamptzOID || sh.formats[0] != pgtype.TextFormatCode {
		t.Fatalf("shape %+v", sh)
	}
	if again := l.tableShape(ref, slices.Clone(names), types); again != sh {
		t.Fatal("same columns: the shape was built again")
	}
	if other := l.tableShape(ref, []string{"id", "uuid_ts"}, []schema.Type{schema.Text, schema.Timestamptz}); other == sh || other.uuidTS != 1 {
		t.Fatalf("other columns: got %+v", other)
	}
	for i := range maxTableShapes + 10 {
		l.tableShape(schema.TableRef{Schema: "s", Table: fmt.Sprint("t", i)}, names, types)
		if len(l.shapes) > maxTableShapes {
			t.Fatalf("%d shapes cached, cap %d", len(l.shapes), maxTableShapes)
		}
	}
}
