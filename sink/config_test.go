package sink

import (
	"strings"
	"testing"
	"time"

	"github.com/segwarehouse/segwarehouse/internal/secret"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	const pw = "hunter2secret"
	tests := []struct {
		name      string
		url       string
		plaintext bool
		maxConns  int
		wantErr   []string // substrings; nil: valid
	}{
		{name: "remote default sslmode is prefer", url: "postgres://u:" + pw + "@db.example.com/wh",
			wantErr: []string{"db.example.com:5432", "sslmode=verify-full", "SEGWH_DATABASE_ALLOW_PLAINTEXT=true"}},
		{name: "remote disable", url: "postgres://u@db.example.com/wh?sslmode=disable", wantErr: []string{"without TLS"}},
		{name: "remote allow", url: "postgres://u@db.example.com/wh?sslmode=allow", wantErr: []string{"without TLS"}},
		{name: "remote prefer key value", url: "host=10.1.2.3 user=u password=" + pw + " sslmode=prefer", wantErr: []string{"10.1.2.3:5432"}},
		{name: "one of several hosts", url: "postgres://u@127.0.0.1,db.example.com/wh?sslmode=disable", wantErr: []string{"db.example.com"}},
		{name: "remote require", url: "postgres://u:" + pw + "@db.example.com/wh?sslmode=require"},
		{name: "remote verify-full", url: "postgres://u@db.example.com/wh?sslmode=verify-full"},
		{name: "remote plaintext allowed", url: "postgres://u@db.example.com/wh?sslmode=disable", plaintext: true},
		{name: "loopback v4", url: "postgres://u@127.0.0.1/wh?sslmode=disable"},
		{name: "loopback v6", url: "postgres://u@[::1]/wh?sslmode=disable"},
		{name: "localhost", url: "postgres://u@localhost/wh?sslmode=disable"},
		{name: "unix socket", url: "host=/var/run/postgresql dbname=wh sslmode=disable"},
		{name: "missing url", url: "", wantErr: []string{"SEGWH_DATABASE_URL is required"}},
		{name: "unparsable url", url: "postgres://u:" + pw + "@db.example.com:notaport/wh", wantErr: []string{"SEGWH_DATABASE_URL"}},
		{name: "bad max conns", url: "postgres://u@127.0.0.1/wh", maxConns: -1, wantErr: []string{"SEGWH_DATABASE_MAX_CONNS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Config{DatabaseURL: secret.String(tt.url), LoaderSchema: "_segwarehouse", MaxConns: 4,
				AllowPlaintext: tt.plaintext, ConnectTimeout: 10 * time.Second}
			if tt.maxConns != 0 {
				c.MaxConns = tt.maxConns
			}
			err := c.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate succeeded, want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestPoolConfigAppliesSettings(t *testing.T) {
	t.Parallel()
	c := Config{DatabaseURL: "postgres://u@127.0.0.1/wh?sslmode=disable", LoaderSchema: "x", MaxConns: 7, ConnectTimeout: 3 * time.Second}
	pc, err := c.poolConfig()
	if err != nil {
		t.Fatal(err)
	}
	if pc.MaxConns != 7 || pc.ConnConfig.ConnectTimeout != 3*time.Second || pc.ConnConfig.RuntimeParams["application_name"] != "segwarehouse" {
		t.Fatalf("pool config: max %d, timeout %v, params %v", pc.MaxConns, pc.ConnConfig.ConnectTimeout, pc.ConnConfig.RuntimeParams)
	}
}
