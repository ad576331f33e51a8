package sink

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
)

func pgErr(code, msg string) error {
	return &pgconn.PgError{Severity: "ERROR", Code: code, Message: msg}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                     string
		err                      error
		poison, fenced, retrying bool
	}{
		{"NUL in text 22021", pgErr("22021", "invalid byte sequence"), true, false, false},
		{"numeric overflow 22003", pgErr("22003", "overflow"), true, false, false},
		{"row too big 54000", pgErr("54000", "index row size exceeds"), true, false, false},
		{"not null 23502", pgErr("23502", "null value"), true, false, false},
		{"unhandled unique 23505", pgErr("23505", "duplicate key"), true, false, false},
		{"datatype mismatch 42804", pgErr("42804", "mismatch"), true, false, false},
		{"binary format 22P03 is a stale table", pgErr("22P03", "incorrect binary data format"), false, false, true},
		{"serialization 40001", pgErr("40001", "could not serialize"), false, false, true},
		{"deadlock 40P01", pgErr("40P01", "deadlock detected"), false, false, true},
		{"admin shutdown 57P01", pgErr("57P01", "terminating connection"), false, false, true},
		{"too many connections 53300", pgErr("53300", "too many clients"), false, false, true},
		{"permission 42501", pgErr("42501", "permission denied for database wh"), false, false, true},
		{"catalog race in DDL", &ddlError{pgErr("23505", "duplicate key value violates unique constraint pg_type_typname_nsp_index")}, false, false, true},
		{"too many columns in DDL", &ddlError{pgErr("54011", "tables can have at most 1600 columns")}, true, false, false},
		{"connection refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, false, false, true},
		{"fenced", &FencedError{Topic: "t", Owner: "a", StoredOwner: "b"}, false, true, false},
		{"wrapped", fmt.Errorf("x: %w", &Error{Op: "loading", Err: pgErr("22P02", "invalid input")}), true, false, false},
		{"cancelled", context.Canceled, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := &Error{Op: "loading batch", Err: tt.err}
			if got := IsPoison(err); got != tt.poison {
				t.Errorf("IsPoison = %v, want %v", got, tt.poison)
			}
			if got := err.Poison(); got != tt.poison {
				t.Errorf("Poison() = %v, want %v", got, tt.poison)
			}
			if got := err.Fenced(); got != tt.fenced {
				t.Errorf("Fenced() = %v, want %v", got, tt.fenced)
			}
			if got := IsRetryable(err); got != tt.retrying {
				t.Errorf("IsRetryable = %v, want %v", got, tt.retrying)
			}
		})
	}
}

func TestFix(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error {
		return &Error{Op: "loading batch", Err: err, user: "loader", database: "wh", host: "db.example.com", password: "hunter2secret"}
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"no create on database", wrap(pgErr("42501", "permission denied for database wh")),
			`GRANT CREATE, TEMPORARY ON DATABASE "wh" TO "loader";`},
		{"no connect", wrap(&pgconn.PgError{Severity: "FATAL", Code: "42501", Message: `permission denied for database "wh"`}),
			`GRANT CONNECT ON DATABASE "wh" TO "loader";`},
		{"no temp tables", wrap(pgErr("42501", `permission denied to create temporary tables in database "wh"`)),
			`GRANT CREATE, TEMPORARY ON DATABASE "wh" TO "loader";`},
		{"schema not owned", wrap(pgErr("42501", "permission denied for schema web")),
			`ALTER SCHEMA "web" OWNER TO "loader";`},
		{"table not owned", wrap(pgErr("42501", "must be owner of table tracks")),
			`ALTER TABLE <schema>."tracks" OWNER TO "loader";`},
		{"unknown user placeholders", pgErr("42501", "permission denied for database wh"),
			`GRANT CREATE, TEMPORARY ON DATABASE <database> TO <loader user>;`},
		{"bad password", wrap(pgErr("28P01", `password authentication failed for user "loader"`)),
			"check the password in SEGWH_DATABASE_URL"},
		{"no pg_hba line", wrap(pgErr("28000", `no pg_hba.conf entry for host "10.0.0.9", user "loader", database "wh", no encryption`)),
			"hostssl wh loader <loader address>/32 scram-sha-256"},
		{"no login", wrap(pgErr("28000", `role "loader" is not permitted to log in`)), `ALTER ROLE "loader" LOGIN;`},
		{"no database", wrap(pgErr("3D000", `database "wh" does not exist`)), `CREATE DATABASE "wh" OWNER "loader";`},
		{"no schema", wrap(pgErr("3F000", `schema "web" does not exist`)), `GRANT CREATE ON DATABASE "wh" TO "loader";`},
		{"missing table", wrap(pgErr("42P01", `relation "x" does not exist`)), "SEGWH_LOADER_SCHEMA"},
		{"too many connections", wrap(pgErr("53300", "sorry, too many clients already")), "max_connections"},
		{"lock table full", wrap(pgErr("53200", "out of shared memory")), "max_locks_per_transaction"},
		{"no such host", wrap(&net.DNSError{Err: "no such host", Name: "db.example.com", IsNotFound: true}),
			"the host name db.example.com does not resolve: check the host in SEGWH_DATABASE_URL"},
		{"no such host text", wrap(errors.New("dial tcp: lookup db.example.com: no such host")), "does not resolve"},
		{"timeout", wrap(errors.New("dial tcp 10.0.0.1:5432: i/o timeout")), "listen_addresses"},
		{"refused", wrap(errors.New("dial tcp 10.0.0.1:5432: connect: connection refused")), "firewalls"},
		{"unknown CA", wrap(fmt.Errorf("tls: %w", x509.UnknownAuthorityError{})), "sslrootcert="},
		{"host mismatch", wrap(fmt.Errorf("tls: %w", x509.HostnameError{Host: "db.example.com", Certificate: &x509.Certificate{}})),
			"does not name db.example.com"},
		{"not a config error", wrap(pgErr("40001", "could not serialize")), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Fix(tt.err)
			if tt.want == "" {
				if got != "" {
					t.Errorf("Fix = %q, want none", got)
				}
				return
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("Fix = %q\nwant it to contain %q", got, tt.want)
			}
			var own *Error
			if e := tt.err.Error(); errors.As(tt.err, &own) && !strings.Contains(e, got) {
				t.Errorf("error message %q does not carry the fix", e)
			}
		})
	}
}

func TestErrorNeverShowsPassword(t *testing.T) {
	t.Parallel()
	const pw = "hunter2secret"
	inner := fmt.Errorf("cannot parse `postgres://loader:%s@db/wh`: bad; also host=db password=%s; and %s", pw, pw, pw)
	e := &Error{Op: "connecting", Err: inner, password: pw}
	if strings.Contains(e.Error(), pw) {
		t.Fatalf("Error() leaks the password: %s", e.Error())
	}
}

// A server that is not listening: the error names the fix and never the
// password, and is retryable.
func TestNewUnreachable(t *testing.T) {
	t.Parallel()
	const pw = "hunter2secret"
	cfg := testConfig("postgres://loader:" + pw + "@127.0.0.1:1/wh?sslmode=disable&connect_timeout=2")
	cfg.ConnectTimeout = 2 * time.Second
	_, err := New(ctxT(t), cfg, nil)
	if err == nil {
		t.Fatal("New succeeded against a closed port")
	}
	t.Logf("operator sees: %v", err)
	if strings.Contains(err.Error(), pw) {
		t.Errorf("error leaks the password: %v", err)
	}
	if !strings.Contains(Fix(err), "listen_addresses") || !strings.Contains(err.Error(), "to fix:") {
		t.Errorf("error %q, fix %q: want the network fix", err, Fix(err))
	}
	if !IsRetryable(err) {
		t.Errorf("IsRetryable(%v) = false", err)
	}
}

// A role without CREATE on the database: the error is the real 42501 and
// Fix gives the GRANT.
func TestNewWithoutPrivileges(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDB(t)
	role := "segwh_limited_" + strings.TrimPrefix(pgtest.DatabaseName(t, dsn), "segwh_test_")
	pgtest.Exec(t, pgtest.AdminURL(), "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN")
	t.Cleanup(func() {
		// Runs before the database is dropped (cleanups run last-in first-out).
		pgtest.Exec(t, pgtest.AdminURL(), "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize())
	})
	db, r := pgx.Identifier{pgtest.DatabaseName(t, dsn)}.Sanitize(), pgx.Identifier{role}.Sanitize()
	limited := strings.Replace(dsn, "postgres://postgres@", "postgres://"+role+":pw-not-needed@", 1)

	// No CONNECT: the login itself fails.
	pgtest.Exec(t, dsn, "REVOKE CONNECT ON DATABASE "+db+" FROM PUBLIC")
	_, err := New(ctxT(t), testConfig(limited), nil)
	if want := fmt.Sprintf(`GRANT CONNECT ON DATABASE %s TO %s;`, db, r); err == nil || !strings.Contains(Fix(err), want) {
		t.Fatalf("New without CONNECT: %v; want the fix %q", err, want)
	}
	t.Logf("operator sees: %v", err)
	pgtest.Exec(t, dsn, "GRANT CONNECT ON DATABASE "+db+" TO "+r)

	// PG 15: PUBLIC has no CREATE on schema public; the role has no CREATE
	// on the database either.
	_, err = New(ctxT(t), testConfig(limited), nil)
	if err == nil {
		t.Fatal("New succeeded without privileges")
	}
	t.Logf("operator sees: %v", err)
	want := fmt.Sprintf(`GRANT CREATE, TEMPORARY ON DATABASE %s TO %s;`, db, r)
	if !strings.Contains(Fix(err), want) {
		t.Errorf("Fix(%v) = %q, want %q", err, Fix(err), want)
	}
	if !IsRetryable(err) || IsPoison(err) {
		t.Errorf("a permission error must be retryable, not poison: %v", err)
	}
	if strings.Contains(err.Error(), "pw-not-needed") {
		t.Errorf("error leaks the password: %v", err)
	}
	// Once granted, the loader starts.
	pgtest.Exec(t, dsn, want)
	l, err := New(ctxT(t), testConfig(limited), nil)
	if err != nil {
		t.Fatalf("New after the grant: %v", err)
	}
	l.Close()
	// Its objects must go before the role can.
	t.Cleanup(func() { pgtest.Exec(t, dsn, "DROP OWNED BY "+pgx.Identifier{role}.Sanitize()) })
}
