package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segwarehouse/segwarehouse/schema"
	"github.com/segwarehouse/segwarehouse/sink"
)

// errCheckFailed makes `check` exit 1 after it printed its verdicts.
var errCheckFailed = errors.New("a check failed")

// checkResult is one line of `segwarehouse check`.
type checkResult struct {
	name string
	err  error  // nil: passed
	fix  string // on failure, what the operator should do
	note string // on success, a detail worth showing
}

// cmdCheck verifies, with the configuration `run` would use, everything the
// loader needs from Kafka and Postgres, and prints one line per check with
// the fix for each failure. It exits 0 only if every check passes.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	results := append(checkKafka(ctx, cfg), checkPostgres(ctx, cfg)...)
	failed := 0
	for _, r := range results {
		if r.err == nil {
			line := "ok    " + r.name
			if r.note != "" {
				line += " (" + r.note + ")"
			}
			fmt.Fprintln(stdout, line)
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL  %s: %v\n", r.name, r.err)
		if r.fix != "" {
			fmt.Fprintf(stdout, "      fix: %s\n", r.fix)
		}
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "%d of %d checks failed\n", failed, len(results))
		return errCheckFailed
	}
	fmt.Fprintf(stdout, "all %d checks passed\n", len(results))
	return nil
}

func checkKafka(ctx context.Context, cfg *config) []checkResult {
	opts, err := cfg.Kafka.ClientOpts()
	if err != nil {
		return []checkResult{{name: "kafka client configuration", err: err, fix: "correct the SEGWH_KAFKA_* variables"}}
	}
	opts = append(opts, kgo.RequestRetries(1))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return []checkResult{{name: "kafka client configuration", err: err, fix: "correct the SEGWH_KAFKA_* variables"}}
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	brokers := strings.Join(cfg.Kafka.Brokers, ",")
	var out []checkResult

	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	meta, err := adm.BrokerMetadata(pctx)
	r := checkResult{name: "kafka brokers reachable (" + brokers + ")"}
	if err != nil {
		r.err, r.fix = err, kafkaFix(err, cfg)
		return append(out, r)
	}
	r.note = fmt.Sprintf("%d brokers, cluster %s", len(meta.Brokers), meta.Cluster)
	out = append(out, r)

	topics, err := adm.ListTopics(ctx, cfg.Kafka.Topics...)
	for _, tp := range cfg.Kafka.Topics {
		r := checkResult{name: "topic " + tp + " exists"}
		switch d, ok := topics[tp]; {
		case err != nil:
			r.err, r.fix = err, kafkaFix(err, cfg)
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			r.err = errors.New("no such topic")
			r.fix = "create it (kafka-topics.sh --create --topic " + tp + " --partitions N) or correct SEGWH_KAFKA_TOPICS"
		case d.Err != nil:
			r.err, r.fix = d.Err, "grant the loader's principal Describe and Read on topic "+tp
		default:
			r.note = fmt.Sprintf("%d partitions", len(d.Partitions))
		}
		out = append(out, r)
	}

	r = checkResult{name: "consumer group " + cfg.Kafka.Group + " readable"}
	if _, err := adm.FetchOffsets(ctx, cfg.Kafka.Group); errors.Is(err, kerr.GroupIDNotFound) {
		r.note = "does not exist yet; the loader creates it when it joins"
	} else if err != nil {
		r.err = err
		r.fix = "grant the loader's principal Read on group " + cfg.Kafka.Group + " (kafka-acls.sh --add --allow-principal User:<loader> --operation Read --group " + cfg.Kafka.Group + ")"
	} else if groups, err := adm.DescribeGroups(ctx, cfg.Kafka.Group); err == nil {
		if g, ok := groups[cfg.Kafka.Group]; ok && g.State != "" {
			r.note = fmt.Sprintf("state %s, %d members", g.State, len(g.Members))
		}
	}
	return append(out, r)
}

func kafkaFix(err error, cfg *config) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "no such host"):
		return "a broker host name in SEGWH_KAFKA_BROKERS does not resolve: check it and the DNS the loader uses"
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "i/o timeout"), strings.Contains(msg, "deadline exceeded"):
		return "no broker answered on " + strings.Join(cfg.Kafka.Brokers, ",") + ": check SEGWH_KAFKA_BROKERS, that the brokers run and that the network lets the loader in (TLS listeners need SEGWH_KAFKA_TLS=true)"
	case strings.Contains(msg, "SASL"), strings.Contains(msg, "authentication"):
		return "the brokers refused the SASL login: check SEGWH_KAFKA_SASL_MECHANISM, SEGWH_KAFKA_SASL_USER and SEGWH_KAFKA_SASL_PASSWORD"
	case strings.Contains(msg, "certificate"), strings.Contains(msg, "tls"):
		return "TLS to the brokers failed: check SEGWH_KAFKA_TLS_CA_FILE and SEGWH_KAFKA_TLS_SERVER_NAME"
	}
	return ""
}

// checkPostgres walks the connection step by step (name, TCP, TLS, login)
// so that the failing step names itself, then checks every privilege the
// loader needs.
func checkPostgres(ctx context.Context, cfg *config) []checkResult {
	var out []checkResult
	pc, err := pgx.ParseConfig(cfg.Sink.DatabaseURL.Reveal())
	if err != nil {
		return append(out, checkResult{name: "SEGWH_DATABASE_URL parses", err: errors.New(redactDSN(err.Error())),
			fix: "write it as postgres://user:password@host:5432/database?sslmode=verify-full or as key=value pairs"})
	}
	if err := cfg.Sink.Validate(); err != nil {
		return append(out, checkResult{name: "database settings", err: err})
	}
	host := pc.Host
	local := strings.HasPrefix(host, "/")
	if !local {
		r := checkResult{name: "postgres host " + host + " resolves"}
		addrs, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			r.err, r.fix = err, sink.Fix(err)
			return append(out, r)
		}
		r.note = strings.Join(addrs, ", ")
		out = append(out, r)

		addr := net.JoinHostPort(host, fmt.Sprint(pc.Port))
		r = checkResult{name: "postgres " + addr + " accepts connections"}
		d := net.Dialer{Timeout: cfg.Sink.ConnectTimeout}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			r.err, r.fix = err, sink.Fix(err)
			return append(out, r)
		}
		c.Close()
		out = append(out, r)
	}

	cctx, cancel := context.WithTimeout(ctx, cfg.Sink.ConnectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, pc)
	r := checkResult{name: fmt.Sprintf("login as %s to database %s", pc.User, pc.Database)}
	if err != nil {
		r.err = errors.New(redactDSN(err.Error()))
		r.fix = sink.Fix(err)
		return append(out, r)
	}
	defer conn.Close(context.Background())
	out = append(out, r)

	r = checkResult{name: "TLS to postgres"}
	if tc, ok := conn.PgConn().Conn().(*tls.Conn); ok {
		st := tc.ConnectionState()
		verified := len(st.VerifiedChains) > 0
		r.note = fmt.Sprintf("%s, certificate verified: %v", tls.VersionName(st.Version), verified)
		if !verified && !cfg.Sink.AllowPlaintext && !isLoopback(host) {
			r.err = errors.New("the server's certificate is not verified")
			r.fix = "use sslmode=verify-full with sslrootcert=<CA file> in SEGWH_DATABASE_URL"
		}
	} else if isLoopback(host) || local {
		r.note = "not in use (local connection)"
	} else if cfg.Sink.AllowPlaintext {
		r.note = "not in use (SEGWH_DATABASE_ALLOW_PLAINTEXT=true)"
	} else {
		r.err = errors.New("the connection is not encrypted")
		r.fix = "use sslmode=verify-full in SEGWH_DATABASE_URL"
	}
	out = append(out, r)

	var user, db string
	_ = conn.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &db)
	grant := func(priv string) string {
		return fmt.Sprintf("run as a superuser or the database's owner: GRANT %s ON DATABASE %s TO %s;", priv,
			pgx.Identifier{db}.Sanitize(), pgx.Identifier{user}.Sanitize())
	}
	for _, priv := range []string{"CONNECT", "CREATE", "TEMPORARY"} {
		r := checkResult{name: priv + " on database " + db}
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT has_database_privilege(current_user, current_database(), $1)", priv).Scan(&ok); err != nil {
			r.err = err
		} else if !ok {
			r.err = fmt.Errorf("%s lacks %s", user, priv)
			r.fix = grant(priv)
		}
		out = append(out, r)
	}

	// The loader's own schema, and source schemas that already exist: the
	// loader adds tables and columns to them, which needs ownership.
	schemas := map[string]string{cfg.Sink.LoaderSchema: "the loader's schema"}
	for _, tp := range cfg.Kafka.Topics {
		src := tp
		if s, ok := cfg.Schema.TopicSources[tp]; ok {
			src = s
		}
		if n := schema.SchemaName(src); n != "" {
			schemas[n] = "source schema of topic " + tp
		}
	}
	for _, s := range cfg.Schema.WriteKeys {
		if n := schema.SchemaName(s); n != "" {
			schemas[n] = "source schema " + s
		}
	}
	names := make([]string, 0, len(schemas))
	for n := range schemas {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r := checkResult{name: schemas[n] + " " + n + " writable"}
		var owner string
		err := conn.QueryRow(ctx, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", n).Scan(&owner)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			r.note = "does not exist yet; the loader will create it"
		case err != nil:
			r.err = err
		default:
			var isOwner bool
			_ = conn.QueryRow(ctx, "SELECT pg_has_role(current_user, $1, 'USAGE')", owner).Scan(&isOwner)
			if !isOwner {
				r.err = fmt.Errorf("owned by %s, not by %s", owner, user)
				r.fix = fmt.Sprintf("the loader adds tables and columns, which needs ownership; run as a superuser or %s: ALTER SCHEMA %s OWNER TO %s;",
					owner, pgx.Identifier{n}.Sanitize(), pgx.Identifier{user}.Sanitize())
			} else {
				r.note = "owned by " + owner
			}
		}
		out = append(out, r)
	}
	return out
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
