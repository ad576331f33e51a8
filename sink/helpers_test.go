package sink

import (
	"context"
	"log/slog"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
	"github.com/segwarehouse/segwarehouse/internal/secret"
	"github.com/segwarehouse/segwarehouse/schema"
)

const (
	testGroup = "g"
	testOwner = "owner-a"
	testTopic = "events"
)

// newLoader returns a Loader on a fresh database and the database's DSN.
func newLoader(t testing.TB) (*Loader, string) {
	t.Helper()
	dsn := pgtest.NewDB(t)
	return newLoaderOn(t, dsn), dsn
}

func newLoaderOn(t testing.TB, dsn string) *Loader {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := New(ctx, testConfig(dsn), testLogger(t))
	if err != nil {
		t.Fatalf("sink.New: %v", err)
	}
	t.Cleanup(l.Close)
	return l
}

func testConfig(dsn string) Config {
	return Config{DatabaseURL: secret.String(dsn), LoaderSchema: "_segwarehouse", MaxConns: 4, ConnectTimeout: 10 * time.Second}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// claim claims partition 0..n-1 of testTopic for owner.
func claim(t testing.TB, l *Loader, owner string, parts ...int32) map[string]map[int32]int64 {
	t.Helper()
	got, err := l.Claim(ctxT(t), testGroup, owner, map[string][]int32{testTopic: parts})
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return got
}

// Values.
func vStr(s string) schema.Value     { return schema.Value{Kind: schema.KindString, Str: s} }
func vInt(i int64) schema.Value      { return schema.Value{Kind: schema.KindInt, Int: i, Str: ""} }
func vNum(s string) schema.Value     { return schema.Value{Kind: schema.KindNumber, Str: s} }
func vBool(b bool) schema.Value      { return schema.BoolValue(b) }
func vTime(t time.Time) schema.Value { return schema.TimeValue(t, "") }

func col(name string, v schema.Value) schema.Col { return schema.Col{Name: name, Val: v} }

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// evRow builds an event row with id and received_at columns first.
func evRow(id string, recv time.Time, off int64, cols ...schema.Col) schema.Row {
	all := append([]schema.Col{col("id", vStr(id)), col("received_at", vTime(recv))}, cols...)
	return schema.Row{ID: id, ReceivedAt: recv, Cols: all, Pos: schema.Pos{Topic: testTopic, Offset: off}}
}

// rec is one decoded record for a batch.
type rec struct {
	off      int64
	rows     []schema.TableRow
	discards []schema.Discard
	rejected []schema.Rejected
}

// build makes a batch of records on partition 0 of testTopic, starting
// from offset from (-1: none stored).
func build(owner string, from int64, recs ...rec) *schema.Batch {
	bb := schema.NewBatchBuilder(testGroup, owner)
	bb.Start(testTopic, 0, from)
	for _, r := range recs {
		d := &schema.Decoded{
			Pos:      schema.Pos{Topic: testTopic, Partition: 0, Offset: r.off},
			Rows:     r.rows,
			Discards: r.discards,
			Rejected: r.rejected,
			Messages: len(r.rows),
			Bytes:    100,
		}
		for i := range d.Rows {
			d.Rows[i].Row.Pos = d.Pos
		}
		bb.Add(d)
	}
	return bb.Batch()
}

func ev(s, table string, row schema.Row) schema.TableRow {
	return schema.TableRow{Table: schema.TableRef{Schema: s, Table: table}, Row: row}
}

// identify builds a users merge row for userID with the given traits.
func userRow(s, userID string, recv time.Time, msgID string, traits ...schema.Col) schema.TableRow {
	row := evRow(userID, recv, 0, traits...)
	row.Key = schema.MergeKey(recv, msgID)
	return schema.TableRow{Table: schema.TableRef{Schema: s, Table: "users"}, Merge: true, Row: row}
}

func load(t testing.TB, l *Loader, b *schema.Batch) {
	t.Helper()
	if err := l.Load(ctxT(t), b); err != nil {
		t.Fatalf("Load: %v", err)
	}
}

func wantColumns(t testing.TB, dsn, s, table string, want []pgtest.Column) {
	t.Helper()
	got := pgtest.Columns(t, dsn, s, table)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("columns of %s.%s:\n got %v\nwant %v", s, table, got, want)
	}
}

func wantRows(t testing.TB, dsn string, want [][]any, sql string, args ...any) {
	t.Helper()
	got := pgtest.Query(t, dsn, sql, args...)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	// Times compare as instants.
	for _, rows := range [][][]any{got, want} {
		for _, r := range rows {
			for i, v := range r {
				if tm, ok := v.(time.Time); ok {
					r[i] = tm.UTC()
				}
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %v\nwant %v", sql, got, want)
	}
}

func count(t testing.TB, dsn, sql string, args ...any) int64 {
	t.Helper()
	return pgtest.Query(t, dsn, sql, args...)[0][0].(int64)
}

// twoLoaders runs load at once on two loaders of the database dsn, owners
// "a" and "b" holding partitions 0 and 1, and fails t with either's error.
func twoLoaders(t *testing.T, dsn string, load func(l *Loader, owner string, part int32) error) {
	t.Helper()
	owners := []string{"a", "b"}
	loaders := make([]*Loader, len(owners))
	for i, owner := range owners {
		loaders[i] = newLoaderOn(t, dsn)
		claim(t, loaders[i], owner, int32(i))
	}
	var wg sync.WaitGroup
	errs := make([]error, len(owners))
	for i, l := range loaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = load(l, owners[i], int32(i))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("loader %s: %v", owners[i], err)
		}
	}
}
