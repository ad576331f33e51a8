package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/segwarehouse/segwarehouse/internal/pgbin"
)

// devDatabaseName is the database `segwarehouse dev` creates on a local
// server when SEGWH_DATABASE_URL is not set.
const devDatabaseName = "segwarehouse_dev"

// devDatabase finds a Postgres for `segwarehouse dev`: SEGWH_DATABASE_URL
// when set; else the local server on 127.0.0.1:5432 (or its unix socket),
// in a database of its own; else a throwaway cluster started from the
// installed Postgres binaries. stop, when not nil, stops that cluster.
func devDatabase(ctx context.Context, log *slog.Logger) (dsn string, stop func(), err error) {
	if v := os.Getenv("SEGWH_DATABASE_URL"); v != "" {
		return v, nil, nil
	}
	var tried []string
	for _, admin := range localAdminURLs() {
		dsn, err := ensureDatabase(ctx, admin, devDatabaseName)
		if err == nil {
			log.Info("using the local Postgres server", "database", devDatabaseName)
			return dsn, nil, nil
		}
		tried = append(tried, err.Error())
	}
	bin, err := pgbin.Dir()
	if err != nil {
		return "", nil, fmt.Errorf("no Postgres server answered (%s) and %w.\n"+
			"Fix: install Postgres (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@16), "+
			"start it, or point SEGWH_DATABASE_URL at a server", strings.Join(tried, "; "), err)
	}
	log.Info("no local Postgres server answered; starting a throwaway cluster", "bin", bin)
	admin, stop, err := startThrowaway(ctx, bin, log)
	if err != nil {
		return "", nil, err
	}
	dsn, err = ensureDatabase(ctx, admin, devDatabaseName)
	if err != nil {
		stop()
		return "", nil, err
	}
	return dsn, stop, nil
}

func localAdminURLs() []string {
	urls := []string{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3"}
	if u, err := user.Current(); err == nil && u.Username != "postgres" {
		urls = append(urls, "postgres://"+u.Username+"@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3")
	}
	if _, err := os.Stat("/var/run/postgresql/.s.PGSQL.5432"); err == nil {
		urls = append(urls, "host=/var/run/postgresql user=postgres dbname=postgres connect_timeout=3")
	}
	return urls
}

// ensureDatabase creates db on the server of admin if it is missing and
// returns a DSN to it.
func ensureDatabase(ctx context.Context, admin, db string) (string, error) {
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("%s:%d: %v", cfg.Host, cfg.Port, errors.Unwrap(err))
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
			return "", fmt.Errorf("creating database %s: %w", db, err)
		}
	}
	if strings.Contains(admin, "://") {
		return strings.Replace(admin, "/postgres?", "/"+db+"?", 1), nil
	}
	return strings.Replace(admin, "dbname=postgres", "dbname="+db, 1), nil
}

// startThrowaway initialises and starts a cluster in the user's cache
// directory on a free loopback port. Postgres refuses to run as root, so as
// root it runs as the postgres user.
func startThrowaway(ctx context.Context, bin string, log *slog.Logger) (string, func(), error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "segwarehouse", "pgdata")
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	asUser := func(name string, args ...string) *exec.Cmd {
		ctx := context.WithoutCancel(ctx)
		if os.Geteuid() == 0 {
			return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		}
		return exec.CommandContext(ctx, filepath.Join(bin, name), args...)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", nil, err
	}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			return "", nil, errors.New("running as root and there is no postgres user to run a throwaway cluster as: install the postgresql package or set SEGWH_DATABASE_URL")
		}
		_ = os.MkdirAll(dir, 0o700)
		_ = exec.Command("chown", "-R", "postgres", filepath.Dir(dir)).Run()
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
		if out, err := asUser("initdb", "-D", dir, "-U", "postgres", "-A", "trust", "--no-sync").CombinedOutput(); err != nil {
			return "", nil, fmt.Errorf("initdb %s: %v: %s", dir, err, out)
		}
	}
	logFile := filepath.Join(dir, "server.log")
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off", port, dir)
	if out, err := asUser("pg_ctl", "-D", dir, "-o", opts, "-l", logFile, "-w", "start").CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("starting Postgres in %s: %v: %s (see %s)", dir, err, out, logFile)
	}
	stop := func() {
		if out, err := asUser("pg_ctl", "-D", dir, "-m", "fast", "-w", "stop").CombinedOutput(); err != nil {
			log.Warn("stopping the throwaway Postgres", "err", err, "out", string(out))
		}
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), stop, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
