package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestConfigErrorsPrintUsageAndExit2(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no topics", map[string]string{"SEGWH_DATABASE_URL": "postgres://u:Hunter2-pw@127.0.0.1/db"}, "SEGWH_KAFKA_TOPICS"},
		{"no database", map[string]string{"SEGWH_KAFKA_TOPICS": "web"}, "SEGWH_DATABASE_URL"},
		{"bad flush rows", map[string]string{"SEGWH_KAFKA_TOPICS": "web", "SEGWH_DATABASE_URL": "postgres://u:Hunter2-pw@127.0.0.1/db", "SEGWH_FLUSH_ROWS": "lots"}, "SEGWH_FLUSH_ROWS"},
		{"bad log format", map[string]string{"SEGWH_KAFKA_TOPICS": "web", "SEGWH_DATABASE_URL": "postgres://u:Hunter2-pw@127.0.0.1/db", "SEGWH_LOG_FORMAT": "xml"}, "SEGWH_LOG_FORMAT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range []string{"SEGWH_DATABASE_URL", "SEGWH_KAFKA_TOPICS", "SEGWH_FLUSH_ROWS", "SEGWH_LOG_FORMAT"} {
				t.Setenv(k, c.env[k]) // restores the variable after the test
				if _, ok := c.env[k]; !ok {
					os.Unsetenv(k)
				}
			}
			var out, errb bytes.Buffer
			code := mainExit([]string{"run"}, &out, &errb)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			s := errb.String()
			first, _, _ := strings.Cut(s, "\n")
			if !strings.Contains(first, c.want) || !strings.Contains(s, "VARIABLE") || !strings.Contains(s, "SEGWH_FLUSH_INTERVAL") {
				t.Errorf("stderr lacks the error or the usage table:\n%s", s)
			}
			if strings.Contains(s+out.String(), "Hunter2-pw") {
				t.Errorf("the password leaked:\n%s", s)
			}
		})
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := mainExit([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Errorf("exit %d: %s", code, errb.String())
	}
	if code := mainExit([]string{"version"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "segwarehouse") {
		t.Errorf("version: exit %d: %s", code, out.String())
	}
}

func TestConfigDumpRedactsSecrets(t *testing.T) {
	t.Setenv("SEGWH_KAFKA_TOPICS", "web")
	t.Setenv("SEGWH_DATABASE_URL", "postgres://loader:S3cret-db-pw@db.example.com/w?sslmode=verify-full")
	t.Setenv("SEGWH_KAFKA_SASL_MECHANISM", "PLAIN")
	t.Setenv("SEGWH_KAFKA_SASL_USER", "loader")
	t.Setenv("SEGWH_KAFKA_SASL_PASSWORD", "kafka-pw-9876")
	var out, errb bytes.Buffer
	if code := mainExit([]string{"config"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	s := out.String()
	for _, want := range []string{`"Topics": [`, `db.example.com`, `"SASLUser": "loader"`} {
		if !strings.Contains(s, want) {
			t.Errorf("config lacks %s:\n%s", want, s)
		}
	}
	if strings.Contains(s, "S3cret-db-pw") || strings.Contains(s, "kafka-pw-9876") {
		t.Errorf("a secret leaked into the config dump:\n%s", s)
	}
}
