package sink

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/segwarehouse/segwarehouse/internal/secret"
)

// This file is the one place that decides what a Postgres error means for
// the consumer: poison (retrying cannot help: isolate and reject the
// record), fenced (another loader owns the partition), or retryable
// (everything else, including permission and configuration errors, which
// an operator fixes while the loader waits).

// Error is an error returned by the Loader. Its message never contains the
// database password and, for errors an operator must fix, ends with the
// fix. Its verdict is read with Poison and Fenced (the consumer's
// interfaces) or IsPoison, IsFenced and IsRetryable.
type Error struct {
	Op  string // what the loader was doing, e.g. "loading batch"
	Err error
	// who the loader connects as, for Fix; never the password.
	user, database, host string
	password             string
}

func (e *Error) Error() string {
	msg := e.Op + ": " + e.Err.Error()
	if fix := fixFor(e.Err, e.user, e.database, e.host); fix != "" {
		msg += "; to fix: " + fix
	}
	return scrub(msg, e.password)
}

func (e *Error) Unwrap() error { return e.Err }

// Poison reports whether Postgres refused the data itself.
func (e *Error) Poison() bool { return IsPoison(e.Err) }

// Fenced reports whether the batch lost its partitions' fence.
func (e *Error) Fenced() bool { return IsFenced(e.Err) }

// FencedError says why a batch's offsets update did not apply: the
// partition is owned by another loader, or its stored offset is not the one
// the batch started from. Nothing of the batch was written.
type FencedError struct {
	Group     string
	Topic     string
	Partition int32
	Owner     string // the batch's owner
	From      int64  // the offset the batch expected (-1: none)
	// What the offsets table holds; Missing when it has no row at all.
	Missing      bool
	StoredOwner  string
	StoredOffset int64 // -1: NULL
}

func (e *FencedError) Error() string {
	p := fmt.Sprintf("partition %s/%d of group %q", e.Topic, e.Partition, e.Group)
	switch {
	case e.Missing:
		return p + " has no row in the offsets table (it was never claimed, or " + wentBack + ")"
	case e.StoredOwner != e.Owner:
		return fmt.Sprintf("%s is owned by %q, not %q", p, e.StoredOwner, e.Owner)
	}
	msg := fmt.Sprintf("%s stores next offset %s, but the batch starts from %s",
		p, offsetText(e.StoredOffset), offsetText(e.From))
	if e.StoredOffset < e.From {
		// This loader's own commits are gone.
		msg += ": " + wentBack
	}
	return msg
}

// wentBack explains a fence that is nobody's fault: Postgres lost commits
// this loader made. Nothing to fix; Kafka replays what was lost.
const wentBack = "the offsets table went back (Postgres restored from a backup, failed over to a replica that lagged, lost commits made with synchronous_commit = off, or the row changed by hand); the partition restarts from Postgres's offset and Kafka replays the rest"

// Fenced is always true.
func (e *FencedError) Fenced() bool { return true }

func offsetText(o int64) string {
	if o < 0 {
		return "none"
	}
	return fmt.Sprint(o)
}

// ddlError marks an error of the DDL phase: Postgres's catalog races
// (23505 on pg_type, 42P07 duplicate table) are retried there, not poison.
type ddlError struct{ err error }

func (e *ddlError) Error() string { return e.err.Error() }
func (e *ddlError) Unwrap() error { return e.err }
func (e *ddlError) Poison() bool {
	var pg *pgconn.PgError
	// Only a program limit (54011 too many columns) is about the data.
	return errors.As(e.err, &pg) && strings.HasPrefix(pg.Code, "54")
}

// valueError is a value the loader cannot encode for its column (a
// timestamp out of Postgres's range): about the data, so poison.
type valueError struct{ err error }

func (e *valueError) Error() string { return e.err.Error() }
func (e *valueError) Unwrap() error { return e.err }
func (e *valueError) Poison() bool  { return true }

// IsFenced reports whether err says the batch's partitions are fenced off.
func IsFenced(err error) bool {
	var f *FencedError
	return errors.As(err, &f)
}

// IsPoison reports whether err is Postgres refusing the data itself, so that
// retrying the same rows cannot succeed: a data exception (class 22), a
// program limit (class 54, e.g. a row or index entry too large), an
// integrity violation (class 23) the loader does not handle, or a datatype
// mismatch (42804).
func IsPoison(err error) bool {
	var d *ddlError
	if errors.As(err, &d) {
		return d.Poison()
	}
	var v *valueError
	if errors.As(err, &v) {
		return true
	}
	var pg *pgconn.PgError
	return errors.As(err, &pg) && poisonCode(pg.Code)
}

func poisonCode(code string) bool {
	switch {
	case code == pgerrcode.InvalidBinaryRepresentation:
		// 22P03: the loader encoded a value for a column type that
		// changed under it (a table dropped and recreated); re-reading
		// the table fixes it.
		return false
	case pgerrcode.IsDataException(code), // 22
		pgerrcode.IsProgramLimitExceeded(code),         // 54
		pgerrcode.IsIntegrityConstraintViolation(code), // 23
		code == pgerrcode.DatatypeMismatch:             // 42804
		return true
	}
	return false
}

// IsRetryable reports whether the consumer should retry err with backoff:
// every error that is neither poison nor fenced (connection errors, admin
// shutdown, serialization failures, deadlocks, too many connections, and
// permission or configuration errors an operator can fix). A cancelled or
// expired context is not retryable: the caller is stopping.
func IsRetryable(err error) bool {
	if err == nil || IsPoison(err) || IsFenced(err) {
		return false
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// Fix returns the operator's fix for a permission or configuration error,
// "" when err is not one. The user, database and host come from the
// Loader's connection settings when err is an *Error.
func Fix(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return scrub(fixFor(e.Err, e.user, e.database, e.host), e.password)
	}
	return fixFor(err, "", "", "")
}

var (
	reSchema = regexp.MustCompile(`permission denied for schema (\S+)`)
	reOwner  = regexp.MustCompile(`must be owner of (?:table|relation) (\S+)`)
	reTable  = regexp.MustCompile(`permission denied for (?:table|relation) (\S+)`)
	reSeq    = regexp.MustCompile(`permission denied for sequence (\S+)`)
)

func fixFor(err error, user, database, host string) string {
	if err == nil {
		return ""
	}
	// A connection error names who tried to connect where.
	var ce *pgconn.ConnectError
	connecting := errors.As(err, &ce)
	if connecting && ce.Config != nil {
		if user == "" {
			user = ce.Config.User
		}
		if database == "" {
			database = ce.Config.Database
		}
		if host == "" {
			host = ce.Config.Host
		}
	}
	u := quoteOr(user, "<loader user>")
	db := quoteOr(database, "<database>")
	h := host
	if h == "" {
		h = "the database host"
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case pgerrcode.InsufficientPrivilege: // 42501
			switch m := pg.Message; {
			case (connecting || pg.Severity == "FATAL") && strings.Contains(m, "permission denied for database"):
				return fmt.Sprintf("the loader may not connect to the database; run as a superuser or the database's owner: GRANT CONNECT ON DATABASE %s TO %s;", db, u)
			case reSchema.MatchString(m):
				s := quoteIdent(reSchema.FindStringSubmatch(m)[1])
				return fmt.Sprintf("the loader must own the schemas it writes to; run as a superuser or the schema's owner: ALTER SCHEMA %s OWNER TO %s;", s, u)
			case reOwner.MatchString(m):
				t := quoteIdent(reOwner.FindStringSubmatch(m)[1])
				return fmt.Sprintf("the loader must own the tables it adds columns to; run as a superuser or the table's owner: ALTER TABLE <schema>.%s OWNER TO %s; (or ALTER SCHEMA <schema> OWNER TO %s; for a schema the loader created, then recreate the table)", t, u, u)
			case reTable.MatchString(m), reSeq.MatchString(m):
				return fmt.Sprintf("the loader must own the tables it writes; run as a superuser or the schema's owner: ALTER SCHEMA <schema> OWNER TO %s; and ALTER TABLE <schema>.<table> OWNER TO %s;", u, u)
			}
			return fmt.Sprintf("grant the loader the right to create schemas and temporary tables; run as a superuser or the database's owner: GRANT CREATE, TEMPORARY ON DATABASE %s TO %s;", db, u)
		case pgerrcode.InvalidSchemaName: // 3F000
			return fmt.Sprintf("a schema the loader needs does not exist and the loader could not create it; grant it: GRANT CREATE ON DATABASE %s TO %s; (or create the schema: CREATE SCHEMA <schema> AUTHORIZATION %s;)", db, u, u)
		case pgerrcode.InvalidCatalogName: // 3D000
			return fmt.Sprintf("database %s does not exist on %s: create it (CREATE DATABASE %s OWNER %s;) or correct the database name in SEGWH_DATABASE_URL", db, h, db, u)
		case pgerrcode.InvalidPassword: // 28P01
			return fmt.Sprintf("the server rejected the password of %s: check the password in SEGWH_DATABASE_URL (a superuser can set it with ALTER ROLE %s PASSWORD '...';)", u, u)
		case pgerrcode.InvalidAuthorizationSpecification: // 28000
			if strings.Contains(pg.Message, "not permitted to log in") {
				return fmt.Sprintf("the role cannot log in; run as a superuser: ALTER ROLE %s LOGIN;", u)
			}
			if strings.Contains(pg.Message, "pg_hba.conf") {
				return fmt.Sprintf("the server's pg_hba.conf has no line for this connection: add one such as `hostssl %s %s <loader address>/32 scram-sha-256` and reload Postgres (SELECT pg_reload_conf();)", unquoteOr(database, "<database>"), unquoteOr(user, "<loader user>"))
			}
			return fmt.Sprintf("the server refused %s: check the role exists with LOGIN and that pg_hba.conf has a line for this connection", u)
		case pgerrcode.UndefinedTable: // 42P01
			return "a table the loader uses is missing (dropped while the loader ran?): the loader re-reads warehouse tables on retry; if a loader table in SEGWH_LOADER_SCHEMA is missing, restart segwarehouse so it recreates it"
		case pgerrcode.TooManyConnections: // 53300
			return "the server has no free connection slots: raise max_connections on the server, or lower SEGWH_DATABASE_MAX_CONNS (times the number of replicas)"
		case pgerrcode.OutOfMemory: // 53200, also "out of shared memory" for locks
			if strings.Contains(pg.Message, "shared memory") {
				return "a flush touched more tables than the server's lock table holds: raise max_locks_per_transaction on the server (and restart it), or flush fewer tables at a time"
			}
		}
		return ""
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound || strings.Contains(err.Error(), "no such host") {
		return fmt.Sprintf("the host name %s does not resolve: check the host in SEGWH_DATABASE_URL and the DNS the loader uses", h)
	}
	var unknownCA x509.UnknownAuthorityError
	if errors.As(err, &unknownCA) || strings.Contains(err.Error(), "certificate signed by unknown authority") {
		return "the server's TLS certificate is signed by a CA the loader does not trust: add sslrootcert=<path to the CA certificate> to SEGWH_DATABASE_URL"
	}
	var hostErr x509.HostnameError
	if errors.As(err, &hostErr) || strings.Contains(err.Error(), "certificate is valid for") {
		return fmt.Sprintf("the server's TLS certificate does not name %s: connect with the host name the certificate names, or fix the certificate (sslmode=verify-ca skips the host name check)", h)
	}
	if strings.Contains(err.Error(), "server refused TLS connection") {
		return "the server does not accept TLS: enable ssl on the server, or on a trusted network use sslmode=disable with SEGWH_DATABASE_ALLOW_PLAINTEXT=true"
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() || strings.Contains(err.Error(), "i/o timeout") ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no route to host") {
		return fmt.Sprintf("Postgres on %s is not reachable: check that it runs, that listen_addresses includes the address the loader uses, and that firewalls or security groups let the loader in on the port", h)
	}
	return ""
}

func quoteOr(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return quoteIdent(s)
}

func unquoteOr(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

// quoteIdent quotes a name for a SQL statement shown to an operator. A name
// Postgres reports in a message is already quoted (or needs no quotes).
func quoteIdent(s string) string {
	if strings.HasPrefix(s, `"`) {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// scrub removes the password from a message: every password=... and
// URL password, and the literal password when it is long enough not to
// mangle ordinary words.
func scrub(msg, password string) string {
	msg = secret.RedactURL(msg)
	if len(password) >= 4 {
		msg = strings.ReplaceAll(msg, password, "xxxxx")
	}
	return msg
}
