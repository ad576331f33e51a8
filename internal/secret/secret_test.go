package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"url", "postgres://loader:s3cret@db.example.com:5432/wh?sslmode=verify-full",
			"postgres://loader:xxxxx@db.example.com:5432/wh?sslmode=verify-full"},
		{"postgresql scheme", "postgresql://u:p%40ss@h/db", "postgresql://u:xxxxx@h/db"},
		{"unescaped at sign", "postgres://u:p@ss@h/db", "postgres://u:xxxxx@h/db"},
		{"url without password", "postgres://u@h/db", "postgres://u@h/db"},
		{"url without userinfo", "postgres://h:5432/db", "postgres://h:5432/db"},
		{"query password", "postgres://u@h/db?sslmode=require&password=s3cret&x=1",
			"postgres://u@h/db?sslmode=require&password=xxxxx&x=1"},
		{"key value", "host=h user=u password=s3cret dbname=d", "host=h user=u password=xxxxx dbname=d"},
		{"key value quoted", "host=h password='s3 c\\'ret' dbname=d", "host=h password=xxxxx dbname=d"},
		{"key value spaces", "host=h password = s3cret", "host=h password = xxxxx"},
		{"key value upper", "host=h PASSWORD=s3cret", "host=h PASSWORD=xxxxx"},
		{"embedded in a message", "cannot parse `postgres://u:s3cret@h/db`: bad port",
			"cannot parse `postgres://u:xxxxx@h/db`: bad port"},
		{"two urls", "a postgres://u:p1@h/db b postgres://v:p2@k/db",
			"a postgres://u:xxxxx@h/db b postgres://v:xxxxx@k/db"},
		{"not a key", "mypassword=1 host=h", "mypassword=1 host=h"},
		{"no secret", "just text", "just text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := RedactURL(tt.in); got != tt.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestStringRedactsEverywhere(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		s      String
		shown  string // what every printer shows
		hidden string // what must never appear
	}{
		{"url", "postgres://loader:hunter22@db:5432/wh", "postgres://loader:xxxxx@db:5432/wh", "hunter22"},
		{"dsn", "host=db user=loader password=hunter22", "host=db user=loader password=xxxxx", "hunter22"},
		{"opaque", "hunter22", "[redacted]", "hunter22"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := struct {
				URL String
				n   int
			}{URL: tt.s}
			var logBuf, jsonLogBuf bytes.Buffer
			slog.New(slog.NewTextHandler(&logBuf, nil)).Info("cfg", "url", tt.s, "cfg", cfg)
			slog.New(slog.NewJSONHandler(&jsonLogBuf, nil)).Info("cfg", "url", tt.s)
			js, err := json.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			text, _ := tt.s.MarshalText()
			outputs := map[string]string{
				"String":    tt.s.String(),
				"%v":        fmt.Sprintf("%v", tt.s),
				"%s":        fmt.Sprintf("%s", tt.s),
				"%q":        fmt.Sprintf("%q", tt.s),
				"%#v":       fmt.Sprintf("%#v", tt.s),
				"%+v(cfg)":  fmt.Sprintf("%+v", cfg),
				"%#v(cfg)":  fmt.Sprintf("%#v", cfg),
				"json":      string(js),
				"text":      string(text),
				"slog text": logBuf.String(),
				"slog json": jsonLogBuf.String(),
			}
			for how, out := range outputs {
				if strings.Contains(out, tt.hidden) {
					t.Errorf("%s leaks the secret: %s", how, out)
				}
				if !strings.Contains(out, tt.shown) {
					t.Errorf("%s = %s, want it to show %q", how, out, tt.shown)
				}
			}
			if tt.s.Reveal() != string(tt.s) {
				t.Errorf("Reveal() = %q", tt.s.Reveal())
			}
		})
	}
}

func TestEnvconfigDecodes(t *testing.T) {
	// Not parallel: sets the environment.
	t.Setenv("SEGWHTEST_DATABASE_URL", "postgres://u:pw@h/db")
	var c struct {
		DatabaseURL String `envconfig:"DATABASE_URL" required:"true"`
	}
	if err := envconfig.Process("SEGWHTEST", &c); err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL.Reveal() != "postgres://u:pw@h/db" {
		t.Fatalf("decoded %q", c.DatabaseURL.Reveal())
	}
}
