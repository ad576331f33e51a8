package sink

import (
	"fmt"
	"testing"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
	"github.com/segwarehouse/segwarehouse/schema"
)

// TestReadTablesMatchesInformationSchema: readTables reads from pg_catalog
// what information_schema.columns shows (relations, column order,
// data_type), for the loader's own types and for tables others made with
// other types, domains, arrays and enums.
func TestReadTablesMatchesInformationSchema(t *testing.T) {
	t.Parallel()
	l, dsn := newLoader(t)
	pgtest.Exec(t, dsn, `CREATE SCHEMA o;
		CREATE TYPE o.mood AS ENUM ('ok', 'meh');
		CREATE DOMAIN o.email AS varchar(200);
		CREATE DOMAIN o.tags AS text[];
		CREATE TABLE o.mixed (id text PRIMARY KEY, gone int, n int4, s smallint, v varchar(10), c char(3), f float8, r real,
			d numeric(10,2), ts timestamp, tz timestamptz, b bool, j jsonb, u uuid, arr int[], m o.mood, e o.email, tg o.tags, dt date);
		ALTER TABLE o.mixed DROP COLUMN gone;
		CREATE VIEW o.v AS SELECT id, n FROM o.mixed;
		CREATE MATERIALIZED VIEW o.mv AS SELECT id FROM o.mixed;
		CREATE TABLE o."Odd ""name""" ("a b" text, "UPPER" bigint)`)
	refs := []schema.TableRef{{Schema: "o", Table: "mixed"}, {Schema: "o", Table: "v"}, {Schema: "o", Table: "mv"},
		{Schema: "o", Table: `Odd "name"`}, {Schema: "o", Table: "missing"}, {Schema: "nope", Table: "mixed"}}
	got, err := readTables(ctxT(t), l.pool, refs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		rows := pgtest.Query(t, dsn, `SELECT column_name::text, data_type::text FROM information_schema.columns
			WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, r.Schema, r.Table)
		ti, ok := got[r]
		if len(rows) == 0 {
			if ok {
				t.Errorf("%s: read %d columns, information_schema shows none", r, len(ti.def.Cols))
			}
			continue
		}
		if !ok {
			t.Errorf("%s: not read; information_schema shows %v", r, rows)
			continue
		}
		var want, have []string
		exact := true
		for _, row := range rows {
			want = append(want, fmt.Sprintf("%s %v", row[0], schema.ParseType(row[1].(string))))
			exact = exact && exactTypes[row[1].(string)]
		}
		for _, c := range ti.def.Cols {
			have = append(have, fmt.Sprintf("%s %v", c.Name, c.Type))
		}
		if fmt.Sprint(have) != fmt.Sprint(want) {
			t.Errorf("%s: read %v, information_schema %v", r, have, want)
		}
		if ti.exact != exact {
			t.Errorf("%s: exact %v, want %v", r, ti.exact, exact)
		}
	}
	if len(got) != 3 {
		t.Errorf("read %d tables, want 3 (mixed, v, Odd \"name\")", len(got))
	}
}
