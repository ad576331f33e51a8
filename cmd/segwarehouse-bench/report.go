package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
)

// result is one workload's measurements.
type result struct {
	w       workload
	loader  *loaderRun
	base    *baselineRun // nil: not measured
	profile string       // CPU profile written, if any
}

// ratio is the loader's rows/s over the baseline's; 0 without a baseline.
func (r *result) ratio() float64 {
	if r.base == nil || r.base.seconds == 0 || r.loader.seconds == 0 {
		return 0
	}
	return (float64(r.loader.rows) / r.loader.seconds) / (float64(r.base.rows) / r.base.seconds)
}

// cpuCeiling is the highest ratio the loader could reach on cores with
// the CPU its run used (the loader's and Postgres's seconds): even with
// every core busy all the time, the run takes at least cpu/cores seconds.
// The rows are the baseline's, so the ratio is baseline seconds over
// loader seconds. 0 when it cannot be told.
func (r *result) cpuCeiling(cores int) float64 {
	if r.base == nil || r.base.seconds == 0 || r.loader.inProcess || cores <= 0 {
		return 0
	}
	cpu := r.loader.loaderCPU + r.loader.pgCPU
	if cpu <= 0 {
		return 0
	}
	return r.base.seconds / (cpu / float64(cores))
}

// header describes the run: machine, server, settings.
type header struct {
	machine, loadavg     string
	pgVersion            string
	pgSettings           []string
	loaderBin, loaderVer string
	loaderSettings       []string
	inProcess            bool
	replicas             int
}

// printHeader prints the machine and the settings used.
func printHeader(w io.Writer, h header) {
	fmt.Fprintln(w, "segwarehouse-bench")
	fmt.Fprintf(w, "machine:   %s; load average at start %s\n", h.machine, h.loadavg)
	fmt.Fprintf(w, "postgres:  %s\n", h.pgVersion)
	fmt.Fprintf(w, "           %s\n", strings.Join(h.pgSettings, " "))
	how := "separate process"
	if h.replicas > 1 {
		how = fmt.Sprintf("%d separate processes in one consumer group (CPU summed, peak RSS the largest one's)", h.replicas)
	}
	if h.inProcess {
		how = "IN THE BENCHMARK'S PROCESS (-cpuprofile): its CPU includes the broker's, no RSS"
	}
	fmt.Fprintf(w, "loader:    %s (%s), %s, sslmode=disable\n", h.loaderBin, h.loaderVer, how)
	fmt.Fprintf(w, "           %s\n", strings.Join(h.loaderSettings, " "))
	fmt.Fprintf(w, "workload:  kfake in the benchmark's process, topic %q with %d partitions; franz-go producer, snappy, linger %s;\n",
		topic, partitions, producerLinger)
	fmt.Fprintf(w, "           sample.DefaultMix (70%% track, 12%% page, 10%% identify, 3%% group, 3%% screen, 2%% alias), %d users, keyed by user, no receivedAt\n", users)
	fmt.Fprintf(w, "baseline:  binary COPY (pgx CopyFrom) of the rows the loader wrote, from memory, into identical tables\n")
	fmt.Fprintf(w, "           in a fresh database, %d rows per transaction, one connection; its loader CPU is the COPY client's\n", baselineRowsPerTx)
	fmt.Fprintf(w, "columns:   ratio = loader rows/s ÷ baseline rows/s; PG CPU counts the postmaster, background processes and the\n"+
		"           run's database's backends; other CPU = the machine's busy time outside the loader, Postgres and this\n"+
		"           process (the broker): other users of a shared machine, kernel threads\n\n")
}

// printTable prints one loader line and one baseline line per workload.
func printTable(w io.Writer, results []*result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\trun\tevents\trows\ttables\tseconds\tevents/s\trows/s\tratio\t"+
		"loader CPU s/1k ev\tPG CPU s/1k ev\tpeak RSS MiB\tflush p50/p99 ms\tflushes/txs\tother CPU s\t")
	for _, r := range results {
		l := r.loader
		ev := float64(l.produced.events)
		rss := "–"
		if l.peakRSS > 0 {
			rss = fmt.Sprintf("%.0f", float64(l.peakRSS)/(1<<20))
		}
		ratio := "–"
		if x := r.ratio(); x > 0 {
			ratio = fmt.Sprintf("%.2f", x)
		}
		fmt.Fprintf(tw, "%s %s\tloader\t%d\t%d\t%d\t%.1f\t%.0f\t%.0f\t%s\t%.3f\t%.3f\t%s\t%.0f / %.0f\t%d\t%.1f\t\n",
			r.w.name, r.w.title, l.produced.events, l.rows, l.tables, l.seconds, ev/l.seconds, float64(l.rows)/l.seconds,
			ratio, l.loaderCPU/ev*1000, l.pgCPU/ev*1000, rss, l.load.p50, l.load.p99, l.load.flushes, nonNeg(l.otherCPU))
		if b := r.base; b != nil {
			fmt.Fprintf(tw, "\tbaseline\t\t%d\t%d\t%.1f\t\t%.0f\t1.00\t%.3f\t%.3f\t\t\t%d\t%.1f\t\n",
				b.rows, b.tables, b.seconds, float64(b.rows)/b.seconds, b.clientCPU/ev*1000, b.pgCPU/ev*1000, b.txs, nonNeg(b.otherCPU))
		}
	}
	tw.Flush()
}

// printNotes prints what the table has no room for, per workload.
func printNotes(w io.Writer, results []*result) {
	for _, r := range results {
		l := r.loader
		p := l.produced
		fmt.Fprintf(w, "\n(%s) %s\n", r.w.name, r.w.describe())
		fmt.Fprintf(w, "    payloads %d–%d bytes, mean %.0f; %.1f MB produced in %.1f s\n",
			p.min, p.max, p.avg(), float64(p.bytes)/1e6, p.elapsed.Seconds())
		if r.w.stream() {
			fmt.Fprintf(w, "    seconds count from the first produced event; the loader had claimed its partitions %.1f s after its start\n", l.claimed)
		} else {
			fmt.Fprintf(w, "    seconds count from the loader's start; it had claimed its partitions after %.1f s\n", l.claimed)
		}
		fmt.Fprintf(w, "    loader: %d records, %d messages, %d rejected, %d discards, %d rows written (merged users/accounts rows once per flush)\n",
			l.load.records, l.load.messages, l.load.rejected, l.load.discards, l.load.rowsWritten)
		fmt.Fprintf(w, "    CPU seconds: loader %.1f, Postgres %.1f, broker+producer+benchmark %.1f, rest of the machine %.1f (other users, kernel)\n",
			l.loaderCPU, l.pgCPU, l.benchCPU, nonNeg(l.otherCPU))
		if c := l.latency; c != nil {
			fmt.Fprintf(w, "    produce-to-committed latency, tracks rows: uuid_ts − received_at p50 %.2f s, p99 %.2f s;\n"+
				"      to the flush's end (loads.started_at + duration_ms, before COMMIT) p50 %.2f s, p99 %.2f s\n",
				c.p50, c.p99, c.commitP50, c.commitP99)
		}
		if b := r.base; b != nil {
			fmt.Fprintf(w, "    baseline: %d transactions, %d COPY statements; CPU seconds: client %.1f, Postgres %.1f, rest of the machine %.1f\n",
				b.txs, b.copies, b.clientCPU, b.pgCPU, nonNeg(b.otherCPU))
			if c, n := r.cpuCeiling(runtime.NumCPU()), runtime.NumCPU(); c > 0 {
				cpu := l.loaderCPU + l.pgCPU
				fmt.Fprintf(w, "    CPU ceiling: the loader and Postgres used %.1f CPU seconds; on %d cores a run takes at least %.1f s, a ratio of at most %.2f\n",
					cpu, n, cpu/float64(n), c)
			}
			if b.rows != l.rows {
				fmt.Fprintf(w, "    WARNING: the baseline copied %d rows, the loader's tables hold %d\n", b.rows, l.rows)
			}
		}
		if int64(p.events) != l.load.messages {
			fmt.Fprintf(w, "    WARNING: %d events produced, the loader loaded %d messages\n", p.events, l.load.messages)
		}
		if r.profile != "" {
			fmt.Fprintf(w, "    CPU profile: %s (go tool pprof -top %s)\n", r.profile, r.profile)
		}
	}
}

// printTargets compares the figures with the targets. They are
// information, not assertions: nothing fails.
func printTargets(w io.Writer, results []*result) {
	by := make(map[string]*result)
	for _, r := range results {
		by[r.w.name] = r
	}
	fmt.Fprintln(w, "\nissue targets (information only):")
	if a := by["a"]; a != nil && a.base != nil {
		fmt.Fprintf(w, "    (a) loader ≥ 0.80 × baseline: %.2f", a.ratio())
		if c := a.cpuCeiling(runtime.NumCPU()); c > 0 {
			fmt.Fprintf(w, " (the run's CPU allows at most %.2f)", c)
		}
		fmt.Fprintln(w)
	}
	if a, b := by["a"], by["b"]; a != nil && b != nil {
		ea := float64(a.loader.produced.events) / a.loader.seconds
		eb := float64(b.loader.produced.events) / b.loader.seconds
		fmt.Fprintf(w, "    (b) events/s ≥ 0.5 × (a)'s: %.2f\n", eb/ea)
	}
	if c := by["c"]; c != nil && c.loader.latency != nil {
		fmt.Fprintf(w, "    (c) p99 produce-to-committed ≤ 2 s: %.2f s (to the flush's end %.2f s)\n",
			c.loader.latency.p99, c.loader.latency.commitP99)
	}
	if d := by["d"]; d != nil && d.loader.peakRSS > 0 {
		fmt.Fprintf(w, "    (d) peak RSS ≤ 256 MiB: %.0f MiB\n", float64(d.loader.peakRSS)/(1<<20))
	}
}

// nonNeg clamps a difference of CPU counters, which sampling at slightly
// different instants can push a little below zero.
func nonNeg(x float64) float64 { return max(x, 0) }
