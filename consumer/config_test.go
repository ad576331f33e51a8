package consumer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestConfigDefaults(t *testing.T) {
	t.Setenv("SEGWH_KAFKA_TOPICS", "a,b")
	var c Config
	if err := envconfig.Process("SEGWH", &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	want := Config{
		Brokers: []string{"127.0.0.1:9092"}, Topics: []string{"a", "b"}, Group: "segwarehouse", ClientID: "segwarehouse",
		SessionTimeout: 45 * time.Second, RebalanceTimeout: 60 * time.Second, StartFrom: "earliest",
		FlushRows: 20000, FlushBytes: 8 << 20, FlushInterval: time.Second, PollRecords: 5000,
		ShutdownTimeout: 25 * time.Second, FlushStuckAfter: 5 * time.Minute,
	}
	if c.Group != want.Group || c.ClientID != want.ClientID || c.Brokers[0] != want.Brokers[0] || len(c.Topics) != 2 ||
		c.SessionTimeout != want.SessionTimeout || c.RebalanceTimeout != want.RebalanceTimeout || c.StartFrom != want.StartFrom ||
		c.FlushRows != want.FlushRows || c.FlushBytes != want.FlushBytes || c.FlushInterval != want.FlushInterval ||
		c.PollRecords != want.PollRecords || c.ShutdownTimeout != want.ShutdownTimeout || c.FlushStuckAfter != want.FlushStuckAfter ||
		c.Workers != 0 || c.TLS || c.SASLMechanism != "" {
		t.Errorf("defaults %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	valid := func() Config {
		return Config{
			Brokers: []string{"k:9092"}, Topics: []string{"t"}, Group: "g", SessionTimeout: time.Second,
			RebalanceTimeout: time.Second, StartFrom: "earliest", FlushRows: 1, FlushBytes: 1, FlushInterval: time.Second,
			PollRecords: 1, ShutdownTimeout: time.Second, FlushStuckAfter: time.Second,
		}
	}
	tests := []struct {
		name string
		mut  func(*Config)
		want string // substring of the error; "" for valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no topics", func(c *Config) { c.Topics = nil }, "SEGWH_KAFKA_TOPICS is required"},
		{"broker without port", func(c *Config) { c.Brokers = []string{"kafka"} }, "SEGWH_KAFKA_BROKERS"},
		{"space after a comma in topics", func(c *Config) { c.Topics = []string{"other", " events"} }, `" events" has spaces around it: write the list without spaces (other,events)`},
		{"space after a comma in brokers", func(c *Config) { c.Brokers = []string{"k:9092", " k2:9092"} }, `write the list without spaces (k:9092,k2:9092)`},
		{"illegal topic", func(c *Config) { c.Topics = []string{"my/topic"} }, `"my/topic" is not a Kafka topic name`},
		{"dotted topic", func(c *Config) { c.Topics = []string{"segment.events-v2_eu"} }, ""},
		{"bad start", func(c *Config) { c.StartFrom = "yesterday" }, "SEGWH_START_FROM"},
		{"zero rows", func(c *Config) { c.FlushRows = 0 }, "SEGWH_FLUSH_ROWS"},
		{"negative workers", func(c *Config) { c.Workers = -1 }, "SEGWH_WORKERS"},
		{"zero session", func(c *Config) { c.SessionTimeout = 0 }, "SEGWH_KAFKA_SESSION_TIMEOUT"},
		{"cert without key", func(c *Config) { c.TLS = true; c.TLSCertFile = "c.pem" }, "SEGWH_KAFKA_TLS_KEY_FILE"},
		{"ca without tls", func(c *Config) { c.TLSCAFile = "ca.pem" }, "SEGWH_KAFKA_TLS=true"},
		{"bad mechanism", func(c *Config) { c.SASLMechanism = "GSSAPI"; c.SASLUser = "u"; c.SASLPassword = "p" }, "SEGWH_KAFKA_SASL_MECHANISM"},
		{"scram without password", func(c *Config) { c.SASLMechanism = "SCRAM-SHA-512"; c.SASLUser = "u" }, "SEGWH_KAFKA_SASL_PASSWORD"},
		{"user without mechanism", func(c *Config) { c.SASLUser = "u" }, "SEGWH_KAFKA_SASL_MECHANISM is empty"},
		{"plain", func(c *Config) { c.SASLMechanism = "PLAIN"; c.SASLUser = "u"; c.SASLPassword = "p" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := valid()
			tt.mut(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v; want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestParseStartFrom(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 5, 31, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want kgo.Offset
	}{
		{"earliest", kgo.NewOffset().AtStart()},
		{"", kgo.NewOffset().AtStart()},
		{"LATEST", kgo.NewOffset().AtEnd()},
		{"2024-05-01T00:00:00Z", kgo.NewOffset().AfterMilli(time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC).UnixMilli())},
		{"2024-05-01T02:00:00+02:00", kgo.NewOffset().AfterMilli(time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC).UnixMilli())},
		{"36 hours ago", kgo.NewOffset().AfterMilli(now.Add(-36 * time.Hour).UnixMilli())},
		{"90 days ago", kgo.NewOffset().AfterMilli(now.AddDate(0, 0, -90).UnixMilli())},
		{"1 week ago", kgo.NewOffset().AfterMilli(now.AddDate(0, 0, -7).UnixMilli())},
		{"2 months ago", kgo.NewOffset().AfterMilli(time.Date(2024, 3, 31, 12, 0, 0, 0, time.UTC).UnixMilli())},
		{" 1 Year ago ", kgo.NewOffset().AfterMilli(now.AddDate(-1, 0, 0).UnixMilli())},
		{"15 minutes ago", kgo.NewOffset().AfterMilli(now.Add(-15 * time.Minute).UnixMilli())},
	}
	for _, tt := range tests {
		got, err := parseStartFrom(tt.in, now)
		if err != nil {
			t.Errorf("parseStartFrom(%q): %v", tt.in, err)
			continue
		}
		if got.String() != tt.want.String() {
			t.Errorf("parseStartFrom(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"yesterday", "2 fortnights ago", "-3 days ago", "3 days", "2024-05-01", "99999999999 hours ago"} {
		if _, err := parseStartFrom(bad, now); err == nil {
			t.Errorf("parseStartFrom(%q): no error", bad)
		}
	}
}

func TestPasswordRedacted(t *testing.T) {
	t.Parallel()
	c := Config{SASLPassword: "hunter2", SASLMechanism: "PLAIN"}
	for _, s := range []string{c.SASLPassword.String(), c.SASLPassword.LogValue().String(), fmt.Sprintf("%+v", c), c.Validate().Error()} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("password printed: %s", s)
		}
	}
}
