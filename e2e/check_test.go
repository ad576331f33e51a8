package e2e

import (
	"net/url"
	"os/exec"
	"strings"
	"testing"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
)

// role creates a login role with a random name, dropped at cleanup, and
// returns its name and a DSN for it on the database at dsn.
func role(t *testing.T, dsn string) (string, string) { return pgtest.NewRole(t, dsn) }

func runCheck(t *testing.T, env map[string]string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, "check")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestCheck runs `segwarehouse check` against roles that lack each
// privilege the loader needs, and expects the exact fix for each.
func TestCheck(t *testing.T) {
	b := newBroker(t, 2, "web")
	cases := []struct {
		name  string
		setup func(t *testing.T, dsn string) (loaderDSN string)
		code  int
		want  []string
	}{
		{"superuser passes", func(t *testing.T, dsn string) string { return dsn }, 0, []string{"all ", "checks passed", "ok    CREATE on database"}},
		{"no CREATE", func(t *testing.T, dsn string) string {
			_, l := role(t, dsn)
			return l
		}, 1, []string{"FAIL  CREATE on database", "GRANT CREATE ON DATABASE"}},
		{"no TEMPORARY", func(t *testing.T, dsn string) string {
			r, l := role(t, dsn)
			db := dbName(dsn)
			pgtest.Exec(t, dsn, `REVOKE TEMPORARY ON DATABASE `+db+` FROM PUBLIC; GRANT CREATE ON DATABASE `+db+` TO `+r)
			return l
		}, 1, []string{"FAIL  TEMPORARY on database", "GRANT TEMPORARY ON DATABASE"}},
		{"least privilege passes", func(t *testing.T, dsn string) string {
			r, l := role(t, dsn)
			pgtest.Exec(t, dsn, `GRANT CONNECT, CREATE, TEMPORARY ON DATABASE `+dbName(dsn)+` TO `+r)
			return l
		}, 0, []string{"checks passed", "does not exist yet; the loader will create it"}},
		{"source schema owned by someone else", func(t *testing.T, dsn string) string {
			r, l := role(t, dsn)
			pgtest.Exec(t, dsn, `GRANT CONNECT, CREATE, TEMPORARY ON DATABASE `+dbName(dsn)+` TO `+r+`; CREATE SCHEMA web`)
			return l
		}, 1, []string{"FAIL  source schema of topic web web writable", `ALTER SCHEMA "web" OWNER TO`}},
		{"no CONNECT", func(t *testing.T, dsn string) string {
			_, l := role(t, dsn)
			pgtest.Exec(t, dsn, `REVOKE CONNECT ON DATABASE `+dbName(dsn)+` FROM PUBLIC`)
			return l
		}, 1, []string{"FAIL  login as", "GRANT CONNECT ON DATABASE"}},
		{"host does not resolve", func(t *testing.T, dsn string) string {
			return "postgres://u:pw-secret-1@nonexistent.invalid:5432/db?sslmode=verify-full"
		}, 1, []string{"FAIL  postgres host nonexistent.invalid resolves", "does not resolve"}},
		{"nothing listens", func(t *testing.T, dsn string) string {
			return "postgres://u:pw-secret-1@127.0.0.1:1/db?sslmode=disable"
		}, 1, []string{"FAIL  postgres 127.0.0.1:1 accepts connections", "is not reachable"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dsn := pgtest.NewDB(t)
			env := loaderEnv(b, c.setup(t, dsn), "web")
			out, code := runCheck(t, env)
			if code != c.code {
				t.Errorf("exit %d, want %d", code, c.code)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if strings.Contains(out, "pw-secret-1") {
				t.Errorf("the password leaked into the output")
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
	t.Run("broker down", func(t *testing.T) {
		dsn := pgtest.NewDB(t)
		env := loaderEnv(b, dsn, "web")
		env["SEGWH_KAFKA_BROKERS"] = "127.0.0.1:1"
		out, code := runCheck(t, env)
		if code != 1 || !strings.Contains(out, "FAIL  kafka brokers reachable") || !strings.Contains(out, "no broker answered") {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
	t.Run("missing topic", func(t *testing.T) {
		dsn := pgtest.NewDB(t)
		out, code := runCheck(t, loaderEnv(b, dsn, "web", "nope"))
		if code != 1 || !strings.Contains(out, "FAIL  topic nope exists") || !strings.Contains(out, "ok    topic web exists (2 partitions)") {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
}

func dbName(dsn string) string {
	u, _ := url.Parse(dsn)
	return strings.TrimPrefix(u.Path, "/")
}
