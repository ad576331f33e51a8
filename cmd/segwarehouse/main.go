// Command segwarehouse loads Segment events from Kafka into a Postgres
// warehouse laid out as Segment's Postgres destination lays it out.
//
//	segwarehouse run     consume and load, configured by SEGWH_* variables
//	segwarehouse dev     the same on an embedded broker with sample events
//	segwarehouse check   verify Kafka and Postgres access and privileges
//	segwarehouse env     print every SEGWH_* variable with its default
//	segwarehouse config  print the effective configuration, secrets redacted
//	segwarehouse version print the version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUsage marks a configuration error: the usage table is printed and the
// process exits 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr))
}

func mainExit(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// A second signal forces the exit the first one started gently.
		<-ctx.Done()
		stop()
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		fmt.Fprintln(stderr, "second signal: exiting now")
		os.Exit(130)
	}()

	var err error
	switch cmd {
	case "run":
		err = cmdRun(ctx, args, stdout, stderr)
	case "dev":
		err = cmdDev(ctx, args, stdout, stderr)
	case "check":
		err = cmdCheck(ctx, args, stdout, stderr)
	case "env":
		printUsage(stdout)
		return 0
	case "config":
		err = cmdConfig(stdout)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "segwarehouse", version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, helpText)
		return 0
	default:
		fmt.Fprintf(stderr, "segwarehouse: unknown command %q\n\n%s", cmd, helpText)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		// The signal arrived while starting up: a clean stop, not a failure.
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "segwarehouse: %s\n\n", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
		printUsage(stderr)
		return 2
	case errors.Is(err, errCheckFailed):
		return 1
	default:
		fmt.Fprintf(stderr, "segwarehouse: %v\n", err)
		return 1
	}
}

const helpText = `segwarehouse loads Segment events from Kafka into Postgres.

Commands:
  run      consume and load, configured by SEGWH_* environment variables
  dev      embedded Kafka broker on 127.0.0.1:9092, sample events, local Postgres
  check    verify Kafka and Postgres access and every privilege the loader needs
  env      list every SEGWH_* variable with its default
  config   print the effective configuration as JSON, secrets redacted
  version  print the version
`

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
