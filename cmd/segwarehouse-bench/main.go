// Command segwarehouse-bench measures segwarehouse against the physical
// limit of the local Postgres (issue 5) and prints a table.
//
// For each workload it starts a kfake broker in its own process, produces
// the workload with franz-go, runs the built loader (`segwarehouse run`)
// as a separate process against the broker and a fresh database, and times
// it from its start until the offsets table holds the topic's end offsets.
// It meters the loader's CPU and peak RSS and Postgres's CPU from /proc,
// reads the flush latencies from _segwarehouse.loads, then copies exactly
// the rows the loader wrote into identical tables of another fresh
// database with binary COPY from memory, 20,000 rows per transaction: the
// baseline.
//
// Workloads:
//
//	a  500k mixed events, 50 event names (backlog)
//	b  the same with 2,000 event names
//	c  a steady 5k events/s for 60 s, produced while the loader runs:
//	   produce-to-committed latency
//	d  a 2M-event backlog drained: peak RSS
//
// The default, all four with baselines for a and b, took 7.5 minutes on a
// 2-core machine (the loader, Postgres and the broker sharing it); -quick
// runs them small in about a minute.
//
// Usage:
//
//	segwarehouse-bench [-workloads a,b,c,d] [-baselines a,b] [-events N] [-quick]
//	                   [-cpuprofile FILE] [-bin bin/segwarehouse] [-keep] [-replicas N]
//
// -replicas runs N loader processes in one consumer group, as N pods
// would run on this one machine: the partitions are split between them,
// and so are the flushes in Postgres. CPU is their sum, peak RSS the
// largest one's.
//
// -cpuprofile runs the loader's packages in this process instead of the
// binary (which has no profile hook): its CPU then includes the broker's,
// and its RSS is not reported.
//
// The Postgres server is $SEGWH_TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres); its user must be allowed
// to CREATE DATABASE and CHECKPOINT, and the benchmark must run on the
// server's machine with access to its processes in /proc (as root or as
// the postgres user). SEGWH_* variables in the environment (e.g.
// SEGWH_FLUSH_ROWS) reach the loader. Nothing is asserted: the figures are
// printed, never checked.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "segwarehouse-bench: %v\n", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	bin        string
	workloads  []string
	baselines  []string
	events     int
	names      int
	rate       int
	duration   time.Duration
	backlog    int
	quick      bool
	cpuprofile string
	timeout    time.Duration
	keep       bool
	seed       uint64
	replicas   int
}

// parseFlags parses args. -quick shrinks the sizes that were not given.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	var err error
	fs := flag.NewFlagSet("segwarehouse-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "bin/segwarehouse", "the built loader binary (make build)")
	wl := fs.String("workloads", "a,b,c,d", "workloads to run, comma-separated: a, b, c, d (all four took 7.5 minutes "+
		"on a 2-core machine)")
	bl := fs.String("baselines", "a,b", "workloads that get a COPY baseline too (c's rate is the producer's, d's point is its RSS)")
	fs.IntVar(&o.events, "events", 500_000, "events of workloads a and b")
	fs.IntVar(&o.names, "names", 2000, "distinct event names of workload b")
	fs.IntVar(&o.rate, "rate", 5000, "events/s of workload c")
	fs.DurationVar(&o.duration, "duration", time.Minute, "how long workload c produces")
	fs.IntVar(&o.backlog, "backlog", 2_000_000, "events of workload d")
	fs.BoolVar(&o.quick, "quick", false, "small sizes for a smoke run (20k events for a and b, 10 s for c, 50k for d)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write the loader's CPU profile here; the loader then runs in this process "+
		"(the binary has no profile hook), so its CPU includes the broker's and its RSS is not reported")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Minute, "longest one loader run may take")
	fs.BoolVar(&o.keep, "keep", false, "keep the databases (their names are printed)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the sample generators")
	fs.IntVar(&o.replicas, "replicas", 1, "loader processes in one consumer group (the partitions are split between them, as between pods)")
	if err = fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		quick := map[string]func(){
			"events":   func() { o.events = 20_000 },
			"duration": func() { o.duration = 10 * time.Second },
			"backlog":  func() { o.backlog = 50_000 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	if o.workloads, err = workloadList("-workloads", *wl); err != nil {
		return nil, err
	}
	if o.baselines, err = workloadList("-baselines", *bl); err != nil {
		return nil, err
	}
	if len(o.workloads) == 0 {
		return nil, fmt.Errorf("-workloads: no workload given")
	}
	if o.events <= 0 || o.backlog <= 0 || o.rate <= 0 || o.duration <= 0 || o.names <= 0 {
		return nil, fmt.Errorf("-events, -backlog, -rate, -duration and -names must be positive")
	}
	if o.replicas < 1 || o.replicas > partitions {
		return nil, fmt.Errorf("-replicas must be between 1 and the topic's %d partitions, got %d", partitions, o.replicas)
	}
	if o.replicas > 1 && o.cpuprofile != "" {
		return nil, fmt.Errorf("-replicas and -cpuprofile do not go together: a profile runs one loader in this process")
	}
	return o, nil
}

// workloadList parses a comma-separated list of workload names, dropping
// repeats; empty is an empty list.
func workloadList(flagName, list string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains([]string{"a", "b", "c", "d"}, name) {
			return nil, fmt.Errorf("%s: unknown workload %q (want a, b, c or d)", flagName, name)
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// workload returns the named workload with the sizes of o.
func (o *options) workload(name string) workload {
	var w workload
	switch name {
	case "a":
		w = workload{title: "mixed", events: o.events, names: 50}
	case "b":
		w = workload{title: fmt.Sprintf("%d names", o.names), events: o.events, names: o.names}
	case "c":
		w = workload{title: fmt.Sprintf("%d/s stream", o.rate), rate: o.rate, duration: o.duration, names: 50}
	default:
		w = workload{title: "backlog", events: o.backlog, names: 50}
	}
	w.name, w.baseline = name, slices.Contains(o.baselines, name)
	return w
}

// describe says what the workload is, in a sentence.
func (w workload) describe() string {
	if w.stream() {
		return fmt.Sprintf("a steady %d events/s for %s produced while the loader runs (%d events, %d event names)",
			w.rate, w.duration, w.total(), w.names)
	}
	return fmt.Sprintf("%d mixed events, %d event names, produced before the loader starts", w.events, w.names)
}

// run runs the selected workloads and prints the report.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if _, err := os.Stat(o.bin); err != nil {
		return fmt.Errorf("the loader binary: %w (run make build, or pass -bin)", err)
	}
	srv := &server{admin: adminURL()}
	h, err := describeRun(ctx, o, srv)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "segwarehouse-bench-")
	if err != nil {
		return fmt.Errorf("creating a directory for the loader logs: %w", err)
	}
	started := time.Now()
	var results []*result
	// The databases are dropped at the end, not after each workload: on
	// a filesystem without a journal (this CI machine's ext4), ext4 skips
	// inodes freed in the last minutes when it allocates one, checking
	// each, so the next workload's tables (four files each) would be
	// created several times slower after a drop of thousands of files.
	var dbs []*database
	defer func() {
		for _, db := range dbs {
			cleanup(srv, db, o.keep, func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) })
		}
	}()
	for _, name := range o.workloads {
		r, err := runWorkload(ctx, o, srv, o.workload(name), tmp, stderr, &dbs)
		if err != nil {
			return fmt.Errorf("workload %s: %w (loader logs in %s)", name, err, tmp)
		}
		results = append(results, r)
	}
	printHeader(stdout, h)
	printTable(stdout, results)
	printNotes(stdout, results)
	printTargets(stdout, results)
	fmt.Fprintf(stdout, "\ntotal %.0f s; loader logs in %s\n", time.Since(started).Seconds(), tmp)
	return nil
}

// describeRun collects the report's header: machine, server, loader.
func describeRun(ctx context.Context, o *options, srv *server) (header, error) {
	version, settings, err := srv.serverInfo(ctx)
	if err != nil {
		return header{}, err
	}
	return header{
		machine: machine(), loadavg: loadAverage(), pgVersion: version, pgSettings: settings,
		loaderBin: o.bin, loaderVer: binaryVersion(o.bin), loaderSettings: loaderSettings(o.bin),
		inProcess: o.cpuprofile != "", replicas: o.replicas,
	}, nil
}

// runWorkload measures one workload: broker, production, loader run,
// baseline. Every database it creates is added to dbs, for the caller
// to drop.
func runWorkload(ctx context.Context, o *options, srv *server, w workload, tmp string, progress io.Writer, dbs *[]*database) (*result, error) {
	say := func(format string, args ...any) {
		fmt.Fprintf(progress, "%s (%s) %s\n", time.Now().Format("15:04:05"), w.name, fmt.Sprintf(format, args...))
	}
	cluster, err := kfake.NewCluster(kfake.Ports(0), kfake.SeedTopics(partitions, topic))
	if err != nil {
		return nil, fmt.Errorf("starting the kfake broker: %w", err)
	}
	defer cluster.Close()
	cl, err := newProducer(cluster.ListenAddrs())
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	db, err := srv.createDatabase(ctx, "segwh_bench_"+w.name)
	if err != nil {
		return nil, err
	}
	*dbs = append(*dbs, db)

	var prod produced
	var ends map[int32]int64
	if !w.stream() {
		say("producing %d events with %d event names", w.events, w.names)
		if prod, err = produceBacklog(ctx, cl, w.events, w.names, o.seed); err != nil {
			return nil, err
		}
		if ends, err = endOffsets(ctx, cl); err != nil {
			return nil, err
		}
		say("produced %.1f MB in %.1f s", float64(prod.bytes)/1e6, prod.elapsed.Seconds())
	}
	stream := func(ctx context.Context) (produced, map[int32]int64, error) {
		say("the loader holds its partitions; producing %d events/s for %s", w.rate, w.duration)
		p, err := produceStream(ctx, cl, w.rate, w.duration, w.names, o.seed)
		if err != nil {
			return p, nil, err
		}
		ends, err := endOffsets(ctx, cl)
		return p, ends, err
	}
	plan := loaderPlan{bin: o.bin, env: loaderEnv(cluster.ListenAddrs(), db.dsn), logPath: filepath.Join(tmp, "loader-"+w.name+".log"),
		replicas: o.replicas}
	r := &result{w: w}
	if o.cpuprofile != "" {
		plan.bin = ""
		plan.profile = profilePath(o.cpuprofile, w.name, len(o.workloads) > 1)
		r.profile = plan.profile
	}
	say("loading into database %s", db.name)
	lctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if r.loader, err = runLoader(lctx, srv, db, plan, w, stream, ends); err != nil {
		return nil, err
	}
	if !w.stream() {
		r.loader.produced = prod
	}
	say("loaded %d rows in %.1f s", r.loader.rows, r.loader.seconds)
	if !w.baseline {
		return r, nil
	}
	dst, err := srv.createDatabase(ctx, "segwh_bench_"+w.name+"_base")
	if err != nil {
		return nil, err
	}
	*dbs = append(*dbs, dst)
	say("baseline: copying the %d rows into database %s", r.loader.rows, dst.name)
	if r.base, err = runBaseline(ctx, srv, db, dst); err != nil {
		return nil, err
	}
	say("baseline copied %d rows in %.1f s", r.base.rows, r.base.seconds)
	return r, nil
}

// cleanup drops db unless keep.
func cleanup(srv *server, db *database, keep bool, say func(string, ...any)) {
	if keep {
		say("kept database %s", db.name)
		return
	}
	if err := srv.dropDatabase(db); err != nil {
		say("%v", err)
	}
}

// profilePath returns the CPU profile file of workload name: path itself,
// or with "-<name>" before its extension when several workloads run.
func profilePath(path, name string, several bool) string {
	if !several {
		return path
	}
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-" + name + ext
}
