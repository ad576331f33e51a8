package pgtest

import (
	"fmt"
	"runtime"
	"strings"
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

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	msg     string
	skipped bool
}

func (f *fatalRecorder) Helper()           {}
func (f *fatalRecorder) Cleanup(fn func()) {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fatalRecorder) Skip(args ...any) { f.skipped = true; runtime.Goexit() }
func (f *fatalRecorder) Skipf(format string, args ...any) {
	f.skipped = true
	runtime.Goexit()
}

func TestNewDBUnreachableFails(t *testing.T) {
	// Not parallel: sets the environment.
	t.Setenv(EnvAdminURL, "postgres://postgres:pw-in-url@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		NewDB(rec)
	}()
	<-done
	if rec.skipped {
		t.Fatal("NewDB skipped; it must fail")
	}
	for _, want := range []string{"127.0.0.1:1", EnvAdminURL, "start one", "connection refused"} {
		if !strings.Contains(rec.msg, want) {
			t.Errorf("failure message %q does not contain %q", rec.msg, want)
		}
	}
	if strings.Contains(rec.msg, "pw-in-url") {
		t.Errorf("failure message leaks the password: %s", rec.msg)
	}
}
