package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
	"github.com/segwarehouse/segwarehouse/internal/testlog"
)

// binary is the segwarehouse binary under test: $SEGWH_E2E_BIN (make e2e
// sets it) or one built once for this test run.
var binary string

func TestMain(m *testing.M) {
	binary = os.Getenv("SEGWH_E2E_BIN")
	cleanup := func() {}
	if binary == "" {
		dir, err := os.MkdirTemp("", "segwh-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cleanup = func() { os.RemoveAll(dir) }
		binary = filepath.Join(dir, "segwarehouse")
		cmd := exec.Command("go", "build", "-o", binary, "../cmd/segwarehouse")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building segwarehouse:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// broker is an in-process kfake cluster on a loopback port that the binary
// under test and kcat reach over TCP.
type broker struct {
	c     *kfake.Cluster
	addrs []string
}

func newBroker(t *testing.T, partitions int32, topics ...string) *broker {
	t.Helper()
	c, err := kfake.NewCluster(kfake.Ports(0), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &broker{c: c, addrs: c.ListenAddrs()}
}

// produce sends records with franz-go and waits for the acks.
func (b *broker) produce(t *testing.T, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addrs...), kgo.ProducerBatchMaxBytes(16<<20), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

// kcatProduce sends each line as one record with kcat (librdkafka), an
// independent client.
func (b *broker) kcatProduce(t *testing.T, topic string, lines ...string) {
	t.Helper()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is not installed (apt-get install kcat; .ci/run installs it): %v", err)
	}
	cmd := exec.Command(kcat, "-P", "-b", b.addrs[0], "-t", topic, "-X", "broker.address.family=v4")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat: %v: %s", err, out)
	}
}

// endOffsets returns topic → partition → end offset.
func (b *broker) endOffsets(t *testing.T, topics ...string) map[string]map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]int64{}
		}
		out[o.Topic][o.Partition] = o.Offset
	})
	return out
}

// loader is one running `segwarehouse run` process.
type loader struct {
	cmd  *exec.Cmd
	out  *testlog.Buffer
	done chan error
}

// loaderEnv is the environment of a loader against broker b and dsn.
func loaderEnv(b *broker, dsn string, topics ...string) map[string]string {
	return map[string]string{
		"SEGWH_KAFKA_BROKERS":           strings.Join(b.addrs, ","),
		"SEGWH_KAFKA_TOPICS":            strings.Join(topics, ","),
		"SEGWH_KAFKA_GROUP":             "e2e",
		"SEGWH_DATABASE_URL":            dsn,
		"SEGWH_HTTP_ADDR":               "127.0.0.1:0",
		"SEGWH_FLUSH_INTERVAL":          "200ms",
		"SEGWH_KAFKA_SESSION_TIMEOUT":   "6s",
		"SEGWH_KAFKA_REBALANCE_TIMEOUT": "10s",
		"SEGWH_LOG_LEVEL":               "info",
	}
}

// startLoader runs the binary with env (and nothing else from the test's
// environment but PATH and HOME). It is stopped with SIGTERM at cleanup.
func startLoader(t *testing.T, env map[string]string, args ...string) *loader {
	t.Helper()
	cmd := newLoaderCmd(env, args...)
	l := &loader{cmd: cmd, out: &testlog.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = l.out, l.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.done <- cmd.Wait() }()
	t.Cleanup(func() {
		l.stop(t, 30*time.Second)
		if t.Failed() {
			t.Logf("loader output:\n%s", tail(l.out.String(), 60))
		}
	})
	return l
}

// newLoaderCmd is the command that runs the binary with env (and nothing
// else from the test's environment but PATH and HOME); args default to run.
func newLoaderCmd(env map[string]string, args ...string) *exec.Cmd {
	if len(args) == 0 {
		args = []string{"run"}
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

// stop sends SIGTERM and waits for the exit; it returns the exit error.
func (l *loader) stop(t *testing.T, grace time.Duration) error {
	t.Helper()
	if l.cmd.ProcessState != nil {
		return nil
	}
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-l.done:
		l.done <- err
		return err
	case <-time.After(grace):
		_ = l.cmd.Process.Kill()
		t.Errorf("loader did not stop within %s of SIGTERM", grace)
		return <-l.done
	}
}

// kill sends SIGKILL and waits.
func (l *loader) kill() {
	_ = l.cmd.Process.Kill()
	err := <-l.done
	l.done <- err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// storedOffsets reads the loader's offsets table.
func storedOffsets(t *testing.T, dsn, group string) map[string]map[int32]int64 {
	t.Helper()
	rows := pgtest.Query(t, dsn, `SELECT topic, partition, next_offset FROM _segwarehouse.offsets WHERE consumer_group = $1 AND next_offset IS NOT NULL`, group)
	out := map[string]map[int32]int64{}
	for _, r := range rows {
		topic := r[0].(string)
		if out[topic] == nil {
			out[topic] = map[int32]int64{}
		}
		out[topic][r[1].(int32)] = r[2].(int64)
	}
	return out
}

// waitCaughtUp waits until the offsets stored in Postgres equal the topics'
// end offsets.
func waitCaughtUp(t *testing.T, b *broker, dsn, group string, timeout time.Duration, topics ...string) {
	t.Helper()
	want := b.endOffsets(t, topics...)
	deadline := time.Now().Add(timeout)
	var got map[string]map[int32]int64
	for time.Now().Before(deadline) {
		if tableExists(t, dsn, "_segwarehouse", "offsets") {
			got = storedOffsets(t, dsn, group)
			if offsetsEqual(want, got) {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("loader did not catch up within %s:\n end offsets %v\n stored      %v", timeout, want, got)
}

func offsetsEqual(want, got map[string]map[int32]int64) bool {
	for topic, ps := range want {
		for p, end := range ps {
			if end == 0 {
				if g, ok := got[topic][p]; ok && g != 0 {
					return false
				}
				continue
			}
			if got[topic][p] != end {
				return false
			}
		}
	}
	return true
}

func tableExists(t *testing.T, dsn, schema, table string) bool {
	t.Helper()
	rows := pgtest.Query(t, dsn, `SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2`, schema, table)
	return len(rows) == 1
}

func count(t *testing.T, dsn, sql string, args ...any) int64 {
	t.Helper()
	rows := pgtest.Query(t, dsn, sql, args...)
	return rows[0][0].(int64)
}

// warehouse creates a fresh database and a least-privileged login role for
// the loader: only CONNECT, CREATE and TEMPORARY on the database, which is
// what Segment's Postgres destination docs tell users to grant, and no
// superuser anywhere in the loader's path. It returns the superuser DSN (for
// the test's own queries) and the loader's DSN.
func warehouse(t *testing.T) (admin, loaderDSN string) {
	t.Helper()
	admin = pgtest.NewDB(t)
	name, dsn := role(t, admin)
	pgtest.Exec(t, admin, `GRANT CONNECT, CREATE, TEMPORARY ON DATABASE `+dbName(admin)+` TO `+name)
	if rows := pgtest.Query(t, admin, `SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = $1`, name); rows[0][0].(bool) {
		t.Fatalf("role %s is privileged", name)
	}
	return admin, dsn
}
