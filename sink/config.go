package sink

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/segwarehouse/segwarehouse/internal/secret"
)

// Config is the sink's configuration. cmd reads it from the environment
// with the prefix SEGWH_ (SEGWH_DATABASE_URL, ...).
type Config struct {
	// DatabaseURL is the warehouse's connection string: a libpq URL
	// (postgres://user:password@host:5432/db?sslmode=verify-full) or a
	// key=value DSN ("host=... user=... sslmode=verify-full"). Required; no
	// default. Its password never appears in logs or errors.
	DatabaseURL secret.String `envconfig:"DATABASE_URL" required:"true" desc:"warehouse connection string (libpq URL or key=value DSN)"`
	// LoaderSchema is the schema holding the loader's own tables (offsets,
	// rejected, discards, loads, merge_state). Default "_segwarehouse".
	LoaderSchema string `envconfig:"LOADER_SCHEMA" default:"_segwarehouse" desc:"schema for the loader's own tables"`
	// MaxConns is the most connections the loader opens, a count. One flush
	// uses one connection; a schema change of many tables borrows a
	// second one when the pool has it to spare. Default 4.
	MaxConns int `envconfig:"DATABASE_MAX_CONNS" default:"4" desc:"maximum Postgres connections"`
	// AllowPlaintext allows a connection string that can send data
	// unencrypted (sslmode=disable, allow or prefer) to a host that is not
	// loopback or a unix socket. Default false: such a string is refused.
	AllowPlaintext bool `envconfig:"DATABASE_ALLOW_PLAINTEXT" default:"false" desc:"allow unencrypted connections to a non-local host"`
	// IdleInTxTimeout is Postgres's idle_in_transaction_session_timeout
	// for the loader's sessions: a loader stalled this long inside a flush
	// loses its transaction, and with it the locks that would stall the
	// other loaders. A flush is never idle that long on purpose. A loader
	// stalled as long in the middle of a statement (a COPY stream), which
	// Postgres counts as active, is ended by the other loaders when some
	// session waits for its locks (stall.go). 0 turns both off. Default 15s.
	IdleInTxTimeout time.Duration `envconfig:"DATABASE_IDLE_IN_TX_TIMEOUT" default:"15s" desc:"end a loader session stalled this long inside a flush transaction, idle or mid-statement (frees its locks); 0: never"`
	// ConnectTimeout bounds one connection attempt, a duration. Default 10s.
	ConnectTimeout time.Duration `envconfig:"DATABASE_CONNECT_TIMEOUT" default:"10s" desc:"timeout of one connection attempt"`
}

// Validate checks the configuration without touching the network.
func (c *Config) Validate() error {
	var errs []error
	if _, err := c.poolConfig(); err != nil {
		errs = append(errs, err)
	}
	if c.LoaderSchema == "" {
		errs = append(errs, errors.New("SEGWH_LOADER_SCHEMA must not be empty"))
	} else if len(c.LoaderSchema) > 63 {
		errs = append(errs, fmt.Errorf("SEGWH_LOADER_SCHEMA %q is longer than Postgres's 63-byte identifier limit", c.LoaderSchema))
	}
	if c.MaxConns < 1 {
		errs = append(errs, fmt.Errorf("SEGWH_DATABASE_MAX_CONNS must be at least 1, got %d", c.MaxConns))
	}
	if c.ConnectTimeout <= 0 {
		errs = append(errs, fmt.Errorf("SEGWH_DATABASE_CONNECT_TIMEOUT must be positive, got %s", c.ConnectTimeout))
	}
	return errors.Join(errs...)
}

// poolConfig parses DatabaseURL and applies the other settings. Its errors
// never contain the password.
func (c *Config) poolConfig() (*pgxpool.Config, error) {
	dsn := c.DatabaseURL.Reveal()
	if dsn == "" {
		return nil, errors.New("SEGWH_DATABASE_URL is required")
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("SEGWH_DATABASE_URL: %s", scrub(err.Error(), passwordOf(dsn)))
	}
	if !c.AllowPlaintext {
		if hosts := plaintextHosts(&pc.ConnConfig.Config); len(hosts) > 0 {
			return nil, fmt.Errorf("SEGWH_DATABASE_URL lets the loader connect to %s without TLS: "+
				"use sslmode=verify-full (or sslmode=require), or set SEGWH_DATABASE_ALLOW_PLAINTEXT=true "+
				"if the network path is trusted", strings.Join(hosts, ", "))
		}
	}
	if c.MaxConns > 0 {
		pc.MaxConns = int32(c.MaxConns)
	}
	if c.ConnectTimeout > 0 {
		pc.ConnConfig.ConnectTimeout = c.ConnectTimeout
	}
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = "segwarehouse"
	}
	// A loader frozen inside its flush transaction (a paused VM, a stopped
	// process) holds its partitions' offsets rows and the merge locks, and
	// every other loader's claims and merges queue behind them: Postgres
	// ends such a session after IdleInTxTimeout, the flush rolls back and
	// the partitions move on. A DSN's own setting wins.
	if _, ok := pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok && c.IdleInTxTimeout > 0 {
		pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(c.IdleInTxTimeout.Milliseconds(), 10)
	}
	return pc, nil
}

// plaintextHosts returns the non-local hosts that some connection attempt
// (the primary one or a fallback: sslmode=allow and prefer are fallbacks)
// would reach without TLS.
func plaintextHosts(pc *pgconn.Config) []string {
	var out []string
	add := func(host string, port uint16, tlsOn bool) {
		if tlsOn || isLocal(host) {
			return
		}
		hp := net.JoinHostPort(host, fmt.Sprint(port))
		for _, h := range out {
			if h == hp {
				return
			}
		}
		out = append(out, hp)
	}
	add(pc.Host, pc.Port, pc.TLSConfig != nil)
	for _, fb := range pc.Fallbacks {
		add(fb.Host, fb.Port, fb.TLSConfig != nil)
	}
	return out
}

// isLocal reports whether host is a unix socket directory or a loopback
// name or address.
func isLocal(host string) bool {
	if strings.HasPrefix(host, "/") || host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// passwordOf returns the password in a connection string, "" when it has
// none or cannot be parsed; used only to scrub error messages.
func passwordOf(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return ""
	}
	return cfg.Password
}
