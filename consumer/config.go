package consumer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/segwarehouse/segwarehouse/internal/secret"
)

// Config is the Kafka side of the loader (environment prefix SEGWH_, applied
// by cmd). The zero value is not valid: load it with envconfig so that the
// defaults apply, then call Validate.
type Config struct {
	// Brokers are the seed brokers, host:port, comma-separated.
	// Default 127.0.0.1:9092.
	Brokers []string `envconfig:"KAFKA_BROKERS" default:"127.0.0.1:9092" desc:"seed brokers, host:port, comma-separated"`
	// Topics are the topics to load, comma-separated. Required.
	Topics []string `envconfig:"KAFKA_TOPICS" required:"true" desc:"topics to load, comma-separated"`
	// Group is the consumer group; it also names the rows of the offsets
	// table in Postgres. Default segwarehouse.
	Group string `envconfig:"KAFKA_GROUP" default:"segwarehouse" desc:"consumer group (also keys the offsets table in Postgres)"`
	// ClientID is the client.id sent to the brokers. Default segwarehouse.
	ClientID string `envconfig:"KAFKA_CLIENT_ID" default:"segwarehouse" desc:"client.id sent to the brokers"`
	// InstanceID is the static group membership id (group.instance.id):
	// a restarted pod with the same id gets its partitions back without a
	// rebalance if it returns within the session timeout. Default: none
	// (dynamic membership).
	InstanceID string `envconfig:"KAFKA_INSTANCE_ID" desc:"static membership group.instance.id, e.g. the pod name; default: dynamic membership"`
	// SessionTimeout is how long the group waits for a silent member
	// before giving its partitions away. Default 45s.
	SessionTimeout time.Duration `envconfig:"KAFKA_SESSION_TIMEOUT" default:"45s" desc:"group session timeout"`
	// RebalanceTimeout is how long members have to finish a rebalance.
	// A revoked partition whose flush is still running after half of it
	// is given up (the flush is then fenced in Postgres). Default 60s.
	RebalanceTimeout time.Duration `envconfig:"KAFKA_REBALANCE_TIMEOUT" default:"60s" desc:"group rebalance timeout"`
	// StartFrom is where a partition with no offset stored in Postgres
	// starts: "earliest", "latest", an RFC 3339 timestamp
	// ("2024-05-01T00:00:00Z") or a time relative to the start of the
	// process ("36 hours ago", "90 days ago", "1 week ago",
	// "2 months ago"). A partition that has an offset in Postgres always
	// resumes from it. Default earliest.
	StartFrom string `envconfig:"START_FROM" default:"earliest" desc:"start of partitions without a stored offset: earliest, latest, RFC 3339 time, or 'N hours|days|weeks|months ago'"`
	// FlushRows ends a flush at this many rows. Default 20000.
	FlushRows int `envconfig:"FLUSH_ROWS" default:"20000" desc:"rows per flush"`
	// FlushBytes ends a flush at this many bytes of record values.
	// Default 8388608 (8 MiB).
	FlushBytes int `envconfig:"FLUSH_BYTES" default:"8388608" desc:"record bytes per flush"`
	// FlushInterval ends a flush this long after its oldest record
	// arrived. Default 1s.
	FlushInterval time.Duration `envconfig:"FLUSH_INTERVAL" default:"1s" desc:"longest a record waits for its flush"`
	// FlushQuiet ends a flush holding at least a tenth of FlushRows or
	// FlushBytes once no new record has come for this long: at the end of
	// a backlog or of a burst, waiting out FlushInterval would gather
	// nothing. Default 0: FlushInterval/4. At FlushInterval or above it
	// never acts.
	FlushQuiet time.Duration `envconfig:"FLUSH_QUIET" desc:"end a flush of at least a tenth of SEGWH_FLUSH_ROWS or SEGWH_FLUSH_BYTES once no record came for this long; 0 means SEGWH_FLUSH_INTERVAL/4"`
	// Workers is the number of goroutines decoding records. Default 0:
	// GOMAXPROCS.
	Workers int `envconfig:"WORKERS" desc:"decoding goroutines; 0 means GOMAXPROCS"`
	// PollRecords bounds the records taken from Kafka per poll.
	// Default 5000.
	PollRecords int `envconfig:"POLL_RECORDS" default:"5000" desc:"records per poll"`
	// ShutdownTimeout bounds, after SIGTERM, the flush in flight, the
	// final flush of pending records and the final offset commit. Keep it
	// under the pod's termination grace period. Default 25s.
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"25s" desc:"deadline of the final flush and commit after SIGTERM"`
	// FlushStuckAfter makes Ready fail when one flush (with its retries)
	// has been running longer than this. Default 5m.
	FlushStuckAfter time.Duration `envconfig:"FLUSH_STUCK_AFTER" default:"5m" desc:"readiness fails when one flush runs longer than this"`

	// TLS turns on TLS to the brokers (system roots unless TLSCAFile).
	// Default false.
	TLS bool `envconfig:"KAFKA_TLS" default:"false" desc:"use TLS to the brokers"`
	// TLSCAFile is a PEM file of CA certificates to trust instead of the
	// system roots. Default: none.
	TLSCAFile string `envconfig:"KAFKA_TLS_CA_FILE" desc:"PEM CA bundle; default: system roots"`
	// TLSCertFile and TLSKeyFile are the PEM client certificate and key
	// for mutual TLS; both or neither. Default: none.
	TLSCertFile string `envconfig:"KAFKA_TLS_CERT_FILE" desc:"PEM client certificate (mutual TLS)"`
	TLSKeyFile  string `envconfig:"KAFKA_TLS_KEY_FILE" desc:"PEM client key (mutual TLS)"`
	// TLSServerName overrides the name checked in the brokers'
	// certificates. Default: the broker's host name.
	TLSServerName string `envconfig:"KAFKA_TLS_SERVER_NAME" desc:"server name checked in broker certificates; default: the broker host"`
	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. Default:
	// none (no SASL).
	SASLMechanism string `envconfig:"KAFKA_SASL_MECHANISM" desc:"PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; default: no SASL"`
	// SASLUser is the SASL user name. Default: none.
	SASLUser string `envconfig:"KAFKA_SASL_USER" desc:"SASL user"`
	// SASLPassword is the SASL password; it never appears in logs.
	// Default: none.
	SASLPassword secret.String `envconfig:"KAFKA_SASL_PASSWORD" desc:"SASL password"`
}

// Validate checks the configuration without touching the network or files.
// Every message names the environment variable to fix.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if len(c.Brokers) == 0 {
		bad("SEGWH_KAFKA_BROKERS is empty: give at least one host:port")
	}
	for _, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			bad("SEGWH_KAFKA_BROKERS: %q is not host:port", b)
		} else if strings.TrimSpace(b) != b {
			bad("SEGWH_KAFKA_BROKERS: %q has spaces around it: write the list without spaces (%s)", b, strings.Join(trimAll(c.Brokers), ","))
		}
	}
	if len(c.Topics) == 0 {
		bad("SEGWH_KAFKA_TOPICS is required: the topics to load, comma-separated")
	}
	for _, t := range c.Topics {
		switch {
		case strings.TrimSpace(t) == "":
			bad("SEGWH_KAFKA_TOPICS has an empty topic name")
		case strings.TrimSpace(t) != t:
			bad("SEGWH_KAFKA_TOPICS: %q has spaces around it: write the list without spaces (%s)", t, strings.Join(trimAll(c.Topics), ","))
		case !validTopic(t):
			bad("SEGWH_KAFKA_TOPICS: %q is not a Kafka topic name (letters, digits, '.', '_' and '-', at most 249, not . or ..)", t)
		}
	}
	if c.Group == "" {
		bad("SEGWH_KAFKA_GROUP must not be empty")
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			bad("%s must be positive, got %s", name, d)
		}
	}
	positive("SEGWH_KAFKA_SESSION_TIMEOUT", c.SessionTimeout)
	positive("SEGWH_KAFKA_REBALANCE_TIMEOUT", c.RebalanceTimeout)
	positive("SEGWH_FLUSH_INTERVAL", c.FlushInterval)
	positive("SEGWH_SHUTDOWN_TIMEOUT", c.ShutdownTimeout)
	positive("SEGWH_FLUSH_STUCK_AFTER", c.FlushStuckAfter)
	if c.FlushQuiet < 0 {
		bad("SEGWH_FLUSH_QUIET must not be negative, got %s", c.FlushQuiet)
	}
	if _, err := parseStartFrom(c.StartFrom, time.Now()); err != nil {
		bad("SEGWH_START_FROM: %v", err)
	}
	if c.FlushRows <= 0 {
		bad("SEGWH_FLUSH_ROWS must be positive, got %d", c.FlushRows)
	}
	if c.FlushBytes <= 0 {
		bad("SEGWH_FLUSH_BYTES must be positive, got %d", c.FlushBytes)
	}
	if c.Workers < 0 {
		bad("SEGWH_WORKERS must be 0 (GOMAXPROCS) or positive, got %d", c.Workers)
	}
	if c.PollRecords <= 0 {
		bad("SEGWH_POLL_RECORDS must be positive, got %d", c.PollRecords)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("SEGWH_KAFKA_TLS_CERT_FILE and SEGWH_KAFKA_TLS_KEY_FILE go together: set both or neither")
	}
	if !c.TLS && (c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSKeyFile != "" || c.TLSServerName != "") {
		bad("SEGWH_KAFKA_TLS_* files or server name are set but SEGWH_KAFKA_TLS is false: set SEGWH_KAFKA_TLS=true")
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "":
		if c.SASLUser != "" || c.SASLPassword != "" {
			bad("SEGWH_KAFKA_SASL_USER/PASSWORD are set but SEGWH_KAFKA_SASL_MECHANISM is empty: set PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
		}
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if c.SASLUser == "" {
			bad("SEGWH_KAFKA_SASL_USER is required with SEGWH_KAFKA_SASL_MECHANISM=%s", c.SASLMechanism)
		}
		if c.SASLPassword == "" {
			bad("SEGWH_KAFKA_SASL_PASSWORD is required with SEGWH_KAFKA_SASL_MECHANISM=%s", c.SASLMechanism)
		}
	default:
		bad("SEGWH_KAFKA_SASL_MECHANISM: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASLMechanism)
	}
	return errors.Join(errs...)
}

// ClientOpts returns the connection options (brokers, client id, TLS, SASL)
// of this configuration, for New and for tools that talk to the same
// cluster (segwarehouse check, kadm). It reads the TLS files; errors name
// the variable.
func (c *Config) ClientOpts() ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.ClientID != "" {
		opts = append(opts, kgo.ClientID(c.ClientID))
	}
	if c.TLS {
		tc, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUser, Pass: c.SASLPassword.Reveal()}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPassword.Reveal()}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPassword.Reveal()}.AsSha512Mechanism()))
	}
	return opts, nil
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading SEGWH_KAFKA_TLS_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("SEGWH_KAFKA_TLS_CA_FILE %s holds no PEM certificate", c.TLSCAFile)
		}
		tc.RootCAs = pool
	}
	if c.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading SEGWH_KAFKA_TLS_CERT_FILE/SEGWH_KAFKA_TLS_KEY_FILE: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// validTopic reports whether t is a legal Kafka topic name.
func validTopic(t string) bool {
	if t == "" || len(t) > 249 || t == "." || t == ".." {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// trimAll returns the non-empty items of xs without their spaces.
func trimAll(xs []string) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

var relativeRE = regexp.MustCompile(`^(\d+)\s*(second|sec|minute|min|hour|day|week|month|year)s?\s+ago$`)

// parseStartFrom turns START_FROM into the offset a partition without a
// stored offset starts at; relative times count back from now.
func parseStartFrom(s string, now time.Time) (kgo.Offset, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	switch v {
	case "", "earliest":
		return kgo.NewOffset().AtStart(), nil
	case "latest":
		return kgo.NewOffset().AtEnd(), nil
	}
	if t, err := time.Parse(time.RFC3339, strings.TrimSpace(s)); err == nil {
		return kgo.NewOffset().AfterMilli(t.UnixMilli()), nil
	}
	m := relativeRE.FindStringSubmatch(v)
	if m == nil {
		return kgo.Offset{}, fmt.Errorf("%q is not earliest, latest, an RFC 3339 time or 'N units ago' (seconds, minutes, hours, days, weeks, months, years)", s)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil || n > 1_000_000 {
		return kgo.Offset{}, fmt.Errorf("%q: the number is too large", s)
	}
	var t time.Time
	switch m[2] {
	case "second", "sec":
		t = now.Add(-time.Duration(n) * time.Second)
	case "minute", "min":
		t = now.Add(-time.Duration(n) * time.Minute)
	case "hour":
		t = now.Add(-time.Duration(n) * time.Hour)
	case "day":
		t = now.AddDate(0, 0, -n)
	case "week":
		t = now.AddDate(0, 0, -7*n)
	case "month":
		t = now.AddDate(0, -n, 0)
	case "year":
		t = now.AddDate(-n, 0, 0)
	}
	return kgo.NewOffset().AfterMilli(t.UnixMilli()), nil
}
