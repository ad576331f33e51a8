package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/segwarehouse/segwarehouse/internal/certs"
	"github.com/segwarehouse/segwarehouse/internal/pgtest"
)

const (
	pgPassword    = "Pg-Secret-7f3a9"
	kafkaPassword = "Kafka-Secret-2b8c1"
)

// noSecrets fails the test if output contains a password.
func noSecrets(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range []string{pgPassword, kafkaPassword} {
		if strings.Contains(out, s) {
			t.Errorf("%s leaks a password:\n%s", what, out)
		}
	}
}

// tlsCluster starts a Postgres that accepts only TLS (hostssl) with scram
// passwords, with a certificate for "localhost" from its own CA, and a
// least-privileged loader role. It returns the cluster and the CA file.
func tlsCluster(t *testing.T) (*pgtest.Cluster, string) {
	t.Helper()
	ca := certs.NewCA(t, "segwh test CA")
	leaf := ca.Server(t, "localhost")
	c := pgtest.StartCluster(t, pgtest.ClusterOptions{
		HBA:           "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
		ServerCertPEM: leaf.CertPEM, ServerKeyPEM: leaf.KeyPEM,
	})
	pgtest.Exec(t, c.AdminDSN(), `CREATE DATABASE warehouse`)
	pgtest.Exec(t, c.AdminDSN(), `CREATE ROLE loader LOGIN PASSWORD '`+pgPassword+`'; GRANT CONNECT, CREATE, TEMPORARY ON DATABASE warehouse TO loader`)
	caFile := certs.WriteFile(t, t.TempDir(), "ca.pem", ca.PEM, 0o644)
	return c, caFile
}

// TestPostgresTLS: the loader connects with sslmode=verify-full to a
// TLS-only, scram-password cluster as a least-privileged role and loads;
// a wrong CA, a wrong host name, plaintext and a wrong password each fail
// with a clear fix; no password ever shows in the output.
func TestPostgresTLS(t *testing.T) {
	c, caFile := tlsCluster(t)
	otherCA := certs.WriteFile(t, t.TempDir(), "other.pem", certs.NewCA(t, "someone else").PEM, 0o644)
	b := newBroker(t, 2, "web")
	dsn := func(host, password, mode, ca string) string {
		s := fmt.Sprintf("postgres://loader:%s@%s:%d/warehouse?sslmode=%s", password, host, c.Port, mode)
		if ca != "" {
			s += "&sslrootcert=" + ca
		}
		return s
	}
	cases := []struct {
		name string
		dsn  string
		code int
		want []string
	}{
		{"verify-full", dsn("localhost", pgPassword, "verify-full", caFile), 0, []string{"ok    TLS to postgres (TLS 1.3, certificate verified: true)", "checks passed"}},
		{"wrong CA", dsn("localhost", pgPassword, "verify-full", otherCA), 1, []string{"FAIL  login as loader", "sslrootcert"}},
		{"wrong host name", dsn("127.0.0.1", pgPassword, "verify-full", caFile), 1, []string{"FAIL  login as loader", "certificate does not name"}},
		{"plaintext", dsn("localhost", pgPassword, "disable", ""), 1, []string{"FAIL  login as loader", "pg_hba.conf"}},
		{"wrong password", dsn("localhost", "not-the-password", "verify-full", caFile), 1, []string{"FAIL  login as loader", "check the password in SEGWH_DATABASE_URL"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runCheck(t, loaderEnv(b, tc.dsn, "web"))
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			noSecrets(t, "check", out)
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}

	t.Run("loads over verify-full", func(t *testing.T) {
		l := startLoader(t, loaderEnv(b, dsn("localhost", pgPassword, "verify-full", caFile), "web"))
		b.kcatProduce(t, "web", `{"type":"track","messageId":"tls1","userId":"u","event":"Secure"}`)
		admin := strings.Replace(c.AdminDSN(), "dbname=postgres", "dbname=warehouse", 1)
		waitCaughtUp(t, b, admin, "e2e", time.Minute, "web")
		if n := count(t, admin, `SELECT count(*) FROM web.secure`); n != 1 {
			t.Errorf("web.secure has %d rows", n)
		}
		if n := count(t, admin, `SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'loader' AND NOT s.ssl`); n != 0 {
			t.Errorf("%d loader connections without TLS", n)
		}
		if owner := one(t, admin, `SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'web'`); owner != "loader" {
			t.Errorf("web is owned by %s", owner)
		}
		l.stop(t, 30*time.Second)
		noSecrets(t, "loader output", l.out.String())
	})

	t.Run("plaintext to a remote host is refused before connecting", func(t *testing.T) {
		for _, mode := range []string{"disable", "prefer", "allow"} {
			env := loaderEnv(b, "postgres://loader:"+pgPassword+"@warehouse.example.com:5432/db?sslmode="+mode, "web")
			out, code := runCheck(t, env)
			if code != 2 || !strings.Contains(out, "SEGWH_DATABASE_ALLOW_PLAINTEXT") {
				t.Errorf("sslmode=%s: exit %d:\n%s", mode, code, out)
			}
			noSecrets(t, "config error", out)
		}
	})
}

// TestKafkaTLSAndSASL: the loader reaches a TLS broker with SASL PLAIN and
// SCRAM, loads, and a wrong password fails check with the fix; no secret in
// any output.
func TestKafkaTLSAndSASL(t *testing.T) {
	ca := certs.NewCA(t, "kafka CA")
	leaf := ca.Server(t, "127.0.0.1", "localhost")
	caFile := certs.WriteFile(t, t.TempDir(), "kafka-ca.pem", ca.PEM, 0o644)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.Ports(0), kfake.SeedTopics(2, "web"), kfake.TLS(leaf.TLSConfig(t)),
				kfake.EnableSASL(), kfake.Superuser(mech, "loader", kafkaPassword))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cluster.Close)
			addrs := cluster.ListenAddrs()
			var m kgo.Opt
			switch mech {
			case "PLAIN":
				m = kgo.SASL(plain.Auth{User: "loader", Pass: kafkaPassword}.AsMechanism())
			case "SCRAM-SHA-256":
				m = kgo.SASL(scram.Auth{User: "loader", Pass: kafkaPassword}.AsSha256Mechanism())
			default:
				m = kgo.SASL(scram.Auth{User: "loader", Pass: kafkaPassword}.AsSha512Mechanism())
			}
			prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DialTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}), m)
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "web", Value: []byte(`{"type":"track","messageId":"k1","userId":"u","event":"Over TLS"}`)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			b := &broker{c: cluster, addrs: addrs}
			dsn, ldsn := warehouse(t)
			env := loaderEnv(b, ldsn, "web")
			env["SEGWH_KAFKA_TLS"] = "true"
			env["SEGWH_KAFKA_TLS_CA_FILE"] = caFile
			env["SEGWH_KAFKA_SASL_MECHANISM"] = mech
			env["SEGWH_KAFKA_SASL_USER"] = "loader"
			env["SEGWH_KAFKA_SASL_PASSWORD"] = kafkaPassword

			out, code := runCheck(t, env)
			if code != 0 {
				t.Errorf("check exit %d:\n%s", code, out)
			}
			noSecrets(t, "check", out)
			l := startLoader(t, env)
			deadline := time.Now().Add(time.Minute)
			for time.Now().Before(deadline) && !tableExists(t, dsn, "web", "over_tls") {
				time.Sleep(200 * time.Millisecond)
			}
			if n := count(t, dsn, `SELECT count(*) FROM web.over_tls`); n != 1 {
				t.Errorf("web.over_tls has %d rows", n)
			}
			l.stop(t, 30*time.Second)
			noSecrets(t, "loader output", l.out.String())

			bad := map[string]string{}
			for k, v := range env {
				bad[k] = v
			}
			bad["SEGWH_KAFKA_SASL_PASSWORD"] = "wrong-" + kafkaPassword[:3]
			out, code = runCheck(t, bad)
			if code != 1 || !strings.Contains(out, "FAIL  kafka brokers reachable") {
				t.Errorf("wrong password: exit %d:\n%s", code, out)
			}
			noSecrets(t, "check with a wrong password", out)
		})
	}
}
