package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/segwarehouse/segwarehouse/consumer"
	"github.com/segwarehouse/segwarehouse/schema"
	"github.com/segwarehouse/segwarehouse/sink"
)

const (
	// group is the loader's consumer group (and key of its offsets rows).
	group = "segwarehouse-bench"
	// loaderSchema is where the loader keeps offsets and loads.
	loaderSchema = "_segwarehouse"
	// stopTimeout bounds a loader's shutdown after SIGTERM.
	stopTimeout = 40 * time.Second
)

// loaderEnv is the configuration the benchmark gives the loader. Any
// other SEGWH_* variable in the benchmark's environment (SEGWH_FLUSH_ROWS,
// SEGWH_WORKERS, …) reaches the loader unchanged.
func loaderEnv(brokers []string, dsn string) map[string]string {
	return map[string]string{
		"SEGWH_KAFKA_BROKERS":  strings.Join(brokers, ","),
		"SEGWH_KAFKA_TOPICS":   topic,
		"SEGWH_KAFKA_GROUP":    group,
		"SEGWH_START_FROM":     "earliest",
		"SEGWH_DATABASE_URL":   dsn,
		"SEGWH_LOADER_SCHEMA":  loaderSchema,
		"SEGWH_HTTP_ADDR":      "127.0.0.1:0",
		"SEGWH_PROGRESS_EVERY": "0",
	}
}

// runningLoader is a loader being measured: the built binary in a child
// process, or the loader's packages in this process (to take a CPU
// profile, which the binary cannot do).
type runningLoader interface {
	// CPU returns the CPU seconds the loader has used so far.
	CPU() (float64, error)
	// PeakRSS returns the loader's peak resident set size in bytes;
	// errInProcess when the loader shares this process.
	PeakRSS() (int64, error)
	// Done is closed when the loader has stopped, by itself or by Stop.
	Done() <-chan struct{}
	// Stop stops the loader the way SIGTERM does and waits for it.
	Stop() error
	// Log returns the end of the loader's log, for error messages.
	Log() string
}

// errInProcess says a per-process figure is not the loader's own.
var errInProcess = errors.New("the loader runs in the benchmark's process")

// childLoader is `segwarehouse run` in a child process.
type childLoader struct {
	cmd     *exec.Cmd
	pid     string
	logPath string
	done    chan struct{}
	err     error // Wait's result, once done is closed
}

// startChild starts `bin run` with env added to this process's
// environment, logging to logPath.
func startChild(bin string, env map[string]string, logPath string) (*childLoader, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the loader's log: %w", err)
	}
	cmd := exec.Command(bin, "run")
	cmd.Env = mergeEnv(os.Environ(), env)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the benchmark dies, the loader must not keep running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s run: %w", bin, err)
	}
	l := &childLoader{cmd: cmd, pid: strconv.Itoa(cmd.Process.Pid), logPath: logPath, done: make(chan struct{})}
	go func() {
		l.err = cmd.Wait()
		logf.Close()
		close(l.done)
	}()
	return l, nil
}

func (l *childLoader) CPU() (float64, error)   { return processCPU(l.pid) }
func (l *childLoader) PeakRSS() (int64, error) { return peakRSS(l.pid) }
func (l *childLoader) Done() <-chan struct{}   { return l.done }
func (l *childLoader) Log() string             { return tail(l.logPath, 2000) }

// Stop sends SIGTERM, waits up to stopTimeout, then kills the loader.
func (l *childLoader) Stop() error {
	select {
	case <-l.done:
		return fmt.Errorf("the loader had already stopped: %v", l.err)
	default:
	}
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping the loader: %w", err)
	}
	select {
	case <-l.done:
	case <-time.After(stopTimeout):
		_ = l.cmd.Process.Kill()
		<-l.done
		return fmt.Errorf("the loader did not stop within %s of SIGTERM; killed it", stopTimeout)
	}
	if l.err != nil {
		return fmt.Errorf("the loader exited after SIGTERM: %w", l.err)
	}
	return nil
}

// inProcessLoader runs the loader's packages in this process, wired as
// `segwarehouse run` wires them, under a CPU profile.
type inProcessLoader struct {
	cancel  context.CancelFunc
	done    chan struct{}
	err     error // Run's result, once done is closed
	cpu0    float64
	logPath string
	profile *os.File
}

// startInProcess sets env in this process's environment, reads the
// loader's configuration from it as the binary does, starts the CPU
// profile into profilePath and runs the loader.
func startInProcess(env map[string]string, logPath, profilePath string) (l *inProcessLoader, err error) {
	for k, v := range env {
		if err := os.Setenv(k, v); err != nil {
			return nil, fmt.Errorf("setting %s: %w", k, err)
		}
	}
	var (
		kc consumer.Config
		sc sink.Config
		dc schema.Config
	)
	for _, spec := range []any{&kc, &sc, &dc} {
		if err := envconfig.Process("SEGWH", spec); err != nil {
			return nil, fmt.Errorf("reading the loader's configuration: %w", err)
		}
	}
	if err := errors.Join(kc.Validate(), sc.Validate(), dc.Validate()); err != nil {
		return nil, fmt.Errorf("the loader's configuration: %w", err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the loader's log: %w", err)
	}
	defer func() {
		if err != nil {
			logf.Close()
		}
	}()
	log := slog.New(slog.NewTextHandler(logf, nil))
	dec, err := schema.NewDecoder(dc)
	if err != nil {
		return nil, fmt.Errorf("creating the decoder: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	snk, err := sink.New(ctx, sc, log)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("connecting the sink: %w", err)
	}
	cons, err := consumer.New(kc, dec, snk, log, consumer.WithSourceHeader(dc.SourceHeader))
	if err != nil {
		cancel()
		snk.Close()
		return nil, fmt.Errorf("creating the consumer: %w", err)
	}
	prof, err := startProfile(profilePath)
	if err != nil {
		cancel()
		snk.Close()
		return nil, err
	}
	cpu0, err := processCPU("self")
	if err != nil {
		cancel()
		snk.Close()
		return nil, err
	}
	l = &inProcessLoader{cancel: cancel, done: make(chan struct{}), cpu0: cpu0, logPath: logPath, profile: prof}
	go func() {
		l.err = cons.Run(ctx)
		snk.Close()
		logf.Close()
		close(l.done)
	}()
	return l, nil
}

// startProfile starts this process's CPU profile into path.
func startProfile(path string) (*os.File, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating the CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting the CPU profile: %w", err)
	}
	return f, nil
}

// CPU is this process's CPU since the loader started: the loader's, plus
// the in-process broker's and the benchmark's own.
func (l *inProcessLoader) CPU() (float64, error) {
	c, err := processCPU("self")
	return c - l.cpu0, err
}

func (l *inProcessLoader) PeakRSS() (int64, error) { return 0, errInProcess }
func (l *inProcessLoader) Done() <-chan struct{}   { return l.done }
func (l *inProcessLoader) Log() string             { return tail(l.logPath, 2000) }

// Stop ends the CPU profile, then stops the loader as SIGTERM would.
func (l *inProcessLoader) Stop() error {
	pprof.StopCPUProfile()
	perr := l.profile.Close()
	l.cancel()
	select {
	case <-l.done:
	case <-time.After(stopTimeout):
		return fmt.Errorf("the in-process loader did not stop within %s", stopTimeout)
	}
	if l.err != nil && !errors.Is(l.err, context.Canceled) {
		return fmt.Errorf("the in-process loader: %w", l.err)
	}
	if perr != nil {
		return fmt.Errorf("writing the CPU profile: %w", perr)
	}
	return nil
}

// replicaSet is loaders running side by side in one consumer group, seen
// as one: CPU summed, peak RSS the largest one's (each is a pod of its
// own), done as soon as any of them stops (none should before Stop).
type replicaSet struct {
	set  []runningLoader
	done chan struct{}
}

func newReplicaSet(set []runningLoader) *replicaSet {
	r := &replicaSet{set: set, done: make(chan struct{})}
	var once sync.Once
	for _, l := range set {
		go func() {
			<-l.Done()
			once.Do(func() { close(r.done) })
		}()
	}
	return r
}

func (r *replicaSet) CPU() (float64, error) {
	var sum float64
	for _, l := range r.set {
		c, err := l.CPU()
		if err != nil {
			return 0, err
		}
		sum += c
	}
	return sum, nil
}

func (r *replicaSet) PeakRSS() (int64, error) {
	var peak int64
	for _, l := range r.set {
		rss, err := l.PeakRSS()
		if err != nil {
			return 0, err
		}
		peak = max(peak, rss)
	}
	return peak, nil
}

func (r *replicaSet) Done() <-chan struct{} { return r.done }

// Stop stops every replica, also after one failed to stop.
func (r *replicaSet) Stop() error {
	errs := make([]error, len(r.set))
	var wg sync.WaitGroup
	for i, l := range r.set {
		wg.Go(func() {
			if err := l.Stop(); err != nil {
				errs[i] = fmt.Errorf("replica %d: %w", i+1, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Log returns the end of every replica's log, each under its number.
func (r *replicaSet) Log() string {
	var b strings.Builder
	for i, l := range r.set {
		fmt.Fprintf(&b, "--- replica %d\n%s", i+1, l.Log())
	}
	return b.String()
}

// mergeEnv returns environ with the variables of set replacing or
// adding to it.
func mergeEnv(environ []string, set map[string]string) []string {
	out := make([]string, 0, len(environ)+len(set))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			out = append(out, kv)
		}
	}
	for k, v := range set {
		out = append(out, k+"="+v)
	}
	return out
}

// tail returns about the last n bytes of the file at path.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
