package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/segwarehouse/segwarehouse/internal/pgbin"
)

// TestThrowawayCluster: where no Postgres answers, `segwarehouse dev` starts
// one from the installed binaries, in the user's cache directory, and makes
// its database there.
func TestThrowawayCluster(t *testing.T) {
	bin, err := pgbin.Dir()
	if err != nil {
		t.Fatalf("%v: the postgresql package is needed (.ci/run installs it)", err)
	}
	cache, err := os.MkdirTemp("", "segwh-dev-cache-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(cache)
	_ = os.Chmod(cache, 0o755) // the postgres user must reach the data directory
	t.Setenv("XDG_CACHE_HOME", cache)
	ctx := context.Background()
	admin, stop, err := startThrowaway(ctx, bin, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	dsn, err := ensureDatabase(ctx, admin, devDatabaseName)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != devDatabaseName {
		t.Fatalf("connected to %q (%v), want %s", db, err, devDatabaseName)
	}
	if _, err := os.Stat(cache + "/segwarehouse/pgdata/PG_VERSION"); err != nil {
		t.Errorf("the cluster is not in the cache directory: %v", err)
	}
}
