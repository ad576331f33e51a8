package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/segwarehouse/segwarehouse/internal/secret"
)

// EnvAdminURL names the variable that points the tests at a Postgres server.
const EnvAdminURL = "SEGWH_TEST_DATABASE_URL"

const defaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// AdminURL returns the admin server's connection string: $SEGWH_TEST_DATABASE_URL
// or the local default.
func AdminURL() string {
	if u := os.Getenv(EnvAdminURL); u != "" {
		return u
	}
	return defaultAdminURL
}

// NewDB creates a database with a random name on the admin server, returns a
// connection string for it (sslmode=disable) and drops it WITH (FORCE) when
// the test ends. It fails the test with instructions when the server cannot
// be reached.
func NewDB(t testing.TB) (dsn string) {
	t.Helper()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "segwh_test_" + hex.EncodeToString(rnd[:])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := connect(t, ctx, AdminURL())
	defer admin.Close(context.Background())
	// Concurrent CREATE DATABASE from one template can fail with 55006
	// (source database is being accessed); try again briefly.
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, secret.RedactURL(err.Error()))
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return withDatabase(t, AdminURL(), name)
}

// Connect returns a connection to dsn (a database from NewDB), closed
// when the test ends.
func Connect(t testing.TB, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	c := connect(t, ctx, dsn)
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func connect(t testing.TB, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: cannot connect to the test Postgres server %s: %s\n"+
			"These tests need a real Postgres (15 or later) whose user may CREATE DATABASE. Either start one "+
			"listening on 127.0.0.1:5432 with user postgres and trust authentication "+
			"(e.g. `docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15`), "+
			"or set %s to the URL of a server you have, e.g. %s=postgres://user:password@host:5432/postgres?sslmode=disable",
			secret.RedactURL(dsn), secret.RedactURL(err.Error()), EnvAdminURL, EnvAdminURL)
	}
	return c
}

// withDatabase returns admin with the database replaced by name and
// sslmode=disable, for a URL or a key=value connection string.
func withDatabase(t testing.TB, admin, name string) string {
	t.Helper()
	if !strings.Contains(admin, "://") {
		// key=value: later keys override earlier ones.
		return admin + " dbname=" + name + " sslmode=disable"
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("pgtest: %s is not a URL: %s", EnvAdminURL, secret.RedactURL(err.Error()))
	}
	u.Path = "/" + name
	q := u.Query()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return u.String()
}

// Query runs sql on the database at dsn and returns every row as a slice of
// values (pgx's default Go types). It fails the test on error.
func Query(t testing.TB, dsn, sql string, args ...any) [][]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := connect(t, ctx, dsn)
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
	var out [][]any
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			t.Fatalf("pgtest: %s: %v", sql, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
	return out
}

// Exec runs sql (several statements when args is empty) on the database at
// dsn. It fails the test on error.
func Exec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := connect(t, ctx, dsn)
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// Column is one column of a table as information_schema reports it.
type Column struct {
	Name     string
	DataType string
}

// Columns returns the table's columns in ordinal order, nil when the table
// does not exist.
func Columns(t testing.TB, dsn, schema, table string) []Column {
	t.Helper()
	rows := Query(t, dsn, `SELECT column_name::text, data_type::text FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, schema, table)
	var out []Column
	for _, r := range rows {
		out = append(out, Column{Name: r[0].(string), DataType: r[1].(string)})
	}
	return out
}

// NewRole creates a login role with a random name and a password, and
// returns its name and dsn (a database from NewDB) with the role as its
// user. The test's cleanup drops the database first (the role's objects
// and grants go with it), then the role: register it after NewDB.
func NewRole(t testing.TB, dsn string) (name, roleDSN string) {
	t.Helper()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name = "segwh_role_" + hex.EncodeToString(rnd[:])
	const password = "pw-secret-1"
	Exec(t, AdminURL(), `CREATE ROLE `+name+` LOGIN PASSWORD '`+password+`'`)
	db := DatabaseName(t, dsn)
	t.Cleanup(func() {
		Exec(t, AdminURL(), `DROP DATABASE IF EXISTS `+pgx.Identifier{db}.Sanitize()+` WITH (FORCE)`)
		Exec(t, AdminURL(), `DROP ROLE IF EXISTS `+name)
	})
	if !strings.Contains(dsn, "://") {
		return name, dsn + " user=" + name + " password=" + password
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("pgtest: %s is not a URL: %s", dsn, secret.RedactURL(err.Error()))
	}
	u.User = url.UserPassword(name, password)
	return name, u.String()
}

// DatabaseName returns the database dsn connects to.
func DatabaseName(t testing.TB, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("pgtest: %s", secret.RedactURL(err.Error()))
	}
	return cfg.Database
}
