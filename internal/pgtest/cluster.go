package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/segwarehouse/segwarehouse/internal/pgbin"
)

// Cluster is a throwaway Postgres cluster of a test's own, for what the
// shared server cannot show: TLS-only access, password authentication, a
// restart.
type Cluster struct {
	Dir  string
	Port int
	bin  string
	t    testing.TB
}

// ClusterOptions configure StartCluster.
type ClusterOptions struct {
	// HBA replaces pg_hba.conf. Default: trust over the unix socket and
	// loopback.
	HBA string
	// ServerCertPEM and ServerKeyPEM turn ssl on with this certificate.
	ServerCertPEM, ServerKeyPEM []byte
	// Settings are extra postgresql.conf lines.
	Settings []string
}

// StartCluster runs initdb and starts a cluster on a free loopback port,
// stopped and removed at cleanup. The superuser is postgres; AdminDSN
// reaches it over the unix socket, so it works whatever HBA says for TCP.
// As root the cluster runs as the postgres OS user (Postgres refuses root).
func StartCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	bin, err := pgbin.Dir()
	if err != nil {
		t.Fatalf("pgtest: %v (install the postgresql package; .ci/run does)", err)
	}
	dir, err := os.MkdirTemp("", "segwh-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Dir: dir, bin: bin, t: t}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("pgtest: running as root and there is no postgres user to run a cluster as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	c.run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync")
	hba := o.HBA
	if hba == "" {
		hba = "local all all trust\nhost all all 127.0.0.1/32 trust\n"
	}
	c.write(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600)
	conf := []string{"fsync = off", "listen_addresses = '127.0.0.1'", "unix_socket_directories = '" + dir + "'", "password_encryption = 'scram-sha-256'"}
	if o.ServerCertPEM != nil {
		c.write(filepath.Join(data, "server.crt"), o.ServerCertPEM, 0o600)
		c.write(filepath.Join(data, "server.key"), o.ServerKeyPEM, 0o600)
		conf = append(conf, "ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'")
	}
	conf = append(conf, o.Settings...)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range conf {
		fmt.Fprintln(f, l)
	}
	f.Close()
	c.Port = freePort(t)
	c.Start()
	t.Cleanup(c.Stop)
	return c
}

// AdminDSN is the superuser's DSN over the unix socket.
func (c *Cluster) AdminDSN() string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", c.Dir, c.Port)
}

// Start starts (or restarts after Stop) the server and waits for it.
func (c *Cluster) Start() {
	c.t.Helper()
	c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-o", fmt.Sprintf("-p %d", c.Port),
		"-l", filepath.Join(c.Dir, "server.log"), "-w", "-t", "60", "start")
}

// Stop stops the server (fast shutdown: clients are disconnected).
func (c *Cluster) Stop() {
	c.t.Helper()
	data := filepath.Join(c.Dir, "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err != nil {
		return
	}
	c.run("pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "60", "stop")
}

// Snapshot copies the stopped cluster's data directory under name, for
// Restore: a file-level backup, as a restore or a failover to a replica
// that lagged would bring back.
func (c *Cluster) Snapshot(name string) {
	c.t.Helper()
	c.copyData(filepath.Join(c.Dir, "data"), filepath.Join(c.Dir, "snapshot-"+name))
}

// Restore replaces the stopped cluster's data directory with the snapshot
// name: every commit since Snapshot is gone.
func (c *Cluster) Restore(name string) {
	c.t.Helper()
	data := filepath.Join(c.Dir, "data")
	if err := os.RemoveAll(data); err != nil {
		c.t.Fatal(err)
	}
	c.copyData(filepath.Join(c.Dir, "snapshot-"+name), data)
}

func (c *Cluster) copyData(from, to string) {
	c.t.Helper()
	if _, err := os.Stat(filepath.Join(from, "postmaster.pid")); err == nil {
		c.t.Fatalf("pgtest: copying %s while the server runs", from)
	}
	// cp -a keeps modes and owners (the postgres OS user's, as root).
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		c.t.Fatalf("pgtest: cp -a %s %s: %v\n%s", from, to, err, out)
	}
}

func (c *Cluster) run(name string, args ...string) {
	c.t.Helper()
	path := filepath.Join(c.bin, name)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.Dir, "server.log"))
		c.t.Fatalf("pgtest: %s %v: %v\n%s\n%s", name, args, err, out, log)
	}
}

func (c *Cluster) write(path string, data []byte, mode os.FileMode) {
	c.t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		c.t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("postgres"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			_ = os.Chown(path, uid, gid)
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 10; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		return p
	}
	t.Fatal("pgtest: no free port")
	return 0
}
