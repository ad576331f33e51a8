package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/segwarehouse/segwarehouse/internal/secret"
)

// envAdminURL names the variable pointing at the Postgres server to use
// (shared with the Postgres tests); its user must be allowed to CREATE
// DATABASE and CHECKPOINT.
const envAdminURL = "SEGWH_TEST_DATABASE_URL"

const defaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// adminURL returns $SEGWH_TEST_DATABASE_URL or the local default.
func adminURL() string {
	if u := os.Getenv(envAdminURL); u != "" {
		return u
	}
	return defaultAdminURL
}

// withDatabase returns the connection string admin with the database
// replaced by name and sslmode=disable (TLS would cost the loader and the
// baseline alike; see FACTS.md), for a URL or a key=value string.
func withDatabase(admin, name string) (string, error) {
	if !strings.Contains(admin, "://") {
		return admin + " dbname=" + name + " sslmode=disable", nil // later keys win
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", fmt.Errorf("%s is not a URL: %s", envAdminURL, secret.RedactURL(err.Error()))
	}
	u.Path = "/" + name
	q := u.Query()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// server is the Postgres server the benchmark runs on.
type server struct {
	admin string // connection string of the admin database
}

// connect opens a connection to dsn; its errors never show a password.
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connecting to Postgres at %s: %s", secret.RedactURL(dsn), secret.RedactURL(err.Error()))
	}
	return c, nil
}

// database is a fresh database created for one measurement.
type database struct {
	name string
	dsn  string
}

// createDatabase creates a database named prefix_<random hex>.
func (s *server) createDatabase(ctx context.Context, prefix string) (*database, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := prefix + "_" + hex.EncodeToString(rnd[:])
	dsn, err := withDatabase(s.admin, name)
	if err != nil {
		return nil, err
	}
	if err := s.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("creating database %s: %w", name, err)
	}
	return &database{name: name, dsn: dsn}, nil
}

// dropDatabase drops db, disconnecting whoever is still connected.
func (s *server) dropDatabase(db *database) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db.name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping database %s: %w", db.name, err)
	}
	return nil
}

// checkpoint writes every dirty buffer out, so that a measurement does
// not pay for the previous one's writes.
func (s *server) checkpoint(ctx context.Context) error {
	if err := s.exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("CHECKPOINT: %w", err)
	}
	return nil
}

// exec runs one statement on the admin database.
func (s *server) exec(ctx context.Context, sql string) error {
	c, err := connect(ctx, s.admin)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql)
	return err
}

// serverSettings are the settings that bound COPY throughput.
var serverSettings = []string{"shared_buffers", "synchronous_commit", "fsync", "full_page_writes",
	"wal_level", "wal_compression", "max_wal_size", "checkpoint_timeout", "autovacuum"}

// serverInfo returns the server's version string and its settings that
// matter here, as "name=value" pairs.
func (s *server) serverInfo(ctx context.Context) (version string, settings []string, err error) {
	c, err := connect(ctx, s.admin)
	if err != nil {
		return "", nil, err
	}
	defer c.Close(context.Background())
	if err := c.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return "", nil, fmt.Errorf("reading the server version: %w", err)
	}
	rows, err := c.Query(ctx, `SELECT name, current_setting(name) FROM pg_settings
		WHERE name = ANY($1) ORDER BY array_position($1, name)`, serverSettings)
	if err != nil {
		return "", nil, fmt.Errorf("reading the server settings: %w", err)
	}
	var name, value string
	_, err = pgx.ForEachRow(rows, []any{&name, &value}, func() error {
		settings = append(settings, name+"="+value)
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("reading the server settings: %w", err)
	}
	return version, settings, nil
}

// isUndefinedTable reports whether err is Postgres's "relation does not
// exist" (the loader has not created its tables yet).
func isUndefinedTable(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "42P01"
}

// backendPID returns the server process id of c's connection.
func backendPID(c *pgx.Conn) int { return int(c.PgConn().PID()) }
