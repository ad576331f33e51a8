package pgtest

import (
	"testing"
)

func TestNewDB(t *testing.T) {
	t.Parallel()
	dsn := NewDB(t)
	Exec(t, dsn, `CREATE TABLE t (id text PRIMARY KEY, n bigint); INSERT INTO t VALUES ('a', 1)`)
	rows := Query(t, dsn, `SELECT id, n FROM t`)
	if len(rows) != 1 || rows[0][0] != "a" || rows[0][1] != int64(1) {
		t.Fatalf("rows = %v", rows)
	}
	cols := Columns(t, dsn, "public", "t")
	want := []Column{{"id", "text"}, {"n", "bigint"}}
	if len(cols) != 2 || cols[0] != want[0] || cols[1] != want[1] {
		t.Fatalf("columns = %v, want %v", cols, want)
	}
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, admin, want string }{
		{"url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/x?sslmode=disable"},
		{"url require", "postgres://u:p@h/postgres?sslmode=require", "postgres://u:p@h/x?sslmode=disable"},
		{"key value", "host=h user=u", "host=h user=u dbname=x sslmode=disable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := withDatabase(t, tt.admin, "x"); got != tt.want {
				t.Errorf("withDatabase(%q) = %q, want %q", tt.admin, got, tt.want)
			}
		})
	}
}
