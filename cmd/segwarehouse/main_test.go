package main

import (
	"bytes"
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
				t.Setenv(k, c.env[k])
			}
			var out, errb bytes.Buffer
			code := mainExit([]string{"run"}, &out, &errb)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			s := errb.String()
			if !strings.Contains(s, c.want) || !strings.Contains(s, "VARIABLE") || !strings.Contains(s, "SEGWH_FLUSH_INTERVAL") {
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
