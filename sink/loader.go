package sink

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/segwarehouse/segwarehouse/schema"
)

// Loader writes batches into a Postgres warehouse. It is safe for
// concurrent use; each Load and Claim uses one pooled connection.
type Loader struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	// Identity for error messages and Fix; never logged with the password.
	user, database, host, password string

	// Quoted names of the loader's own tables.
	offsets, rejected, discards, loads, mergeState string

	tracer trace.Tracer // spans for DDL, each COPY, the merges and the commit
	ddl    struct{ schemas, tables, columns atomic.Int64 }
	stalls atomic.Int64 // stalled loader sessions this loader ended (stall.go)

	stopWatch func()        // ends watchStalls
	watching  chan struct{} // closed when watchStalls has returned

	mu    sync.Mutex               // guards cache, exact and gen
	cache *schema.Warehouse        // warehouse tables as last read or created
	exact map[schema.TableRef]bool // cached tables with only the loader's column types
	gen   uint64                   // incremented when tables are forgotten

	shapesMu sync.Mutex
	shapes   map[schema.TableRef]*tableShape // see tableShape
}

// Names of the loader's own tables inside Config.LoaderSchema.
const (
	tableOffsets    = "offsets"
	tableRejected   = "rejected"
	tableDiscards   = "discards"
	tableLoads      = "loads"
	tableMergeState = "merge_state"
)

// Advisory lock keys. Transaction-level locks: they go away with the
// transaction, also when a loader dies.
var (
	// ddlLockKey serialises every schema change (the loader's own bootstrap
	// and warehouse DDL) across replicas: CREATE ... IF NOT EXISTS is not
	// safe against a concurrent identical CREATE.
	ddlLockKey = lockKey("segwarehouse", "ddl")
)

// lockKey derives a 64-bit advisory lock key from names (also the hash in
// the merges' temporary table names, mergeTemp).
func lockKey(parts ...string) int64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return int64(h.Sum64())
}

// Option configures New.
type Option func(*options)

type options struct {
	tp trace.TracerProvider
}

// WithTracerProvider traces the loader: a span for the DDL phase, each
// table's COPY, each merge and the commit (children of the caller's span,
// the consumer's flush), and, through otelpgx, one span per statement.
// Query parameters are never recorded. Default: no tracing.
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tp = tp } }

// DDLStats returns how many DDL statements this loader ran, by kind:
// create_schema, create_table, add_column.
func (l *Loader) DDLStats() map[string]int64 {
	return map[string]int64{
		"create_schema": l.ddl.schemas.Load(),
		"create_table":  l.ddl.tables.Load(),
		"add_column":    l.ddl.columns.Load(),
	}
}

// New connects to the warehouse, checks the connection and creates the
// loader's schema and tables when they are missing. ctx bounds only the
// start-up; log receives lifecycle events.
func New(ctx context.Context, cfg Config, log *slog.Logger, opts ...Option) (*Loader, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc, err := cfg.poolConfig()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cc := pc.ConnConfig
	tracer := trace.Tracer(noop.NewTracerProvider().Tracer(""))
	if o.tp != nil {
		tracer = o.tp.Tracer("github.com/segwarehouse/segwarehouse/sink")
		cc.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(o.tp), otelpgx.WithDisableAcquireTracer())
	}
	l := &Loader{
		tracer:     tracer,
		log:        log,
		user:       cc.User,
		database:   cc.Database,
		host:       cc.Host,
		password:   cc.Password,
		offsets:    pgx.Identifier{cfg.LoaderSchema, tableOffsets}.Sanitize(),
		rejected:   pgx.Identifier{cfg.LoaderSchema, tableRejected}.Sanitize(),
		discards:   pgx.Identifier{cfg.LoaderSchema, tableDiscards}.Sanitize(),
		loads:      pgx.Identifier{cfg.LoaderSchema, tableLoads}.Sanitize(),
		mergeState: pgx.Identifier{cfg.LoaderSchema, tableMergeState}.Sanitize(),
		cache:      schema.NewWarehouse(),
		exact:      make(map[schema.TableRef]bool),
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, l.wrap("creating connection pool", err)
	}
	l.pool = pool
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, l.wrap("connecting to "+cc.Host, err)
	}
	if err := l.bootstrap(ctx, cfg.LoaderSchema); err != nil {
		pool.Close()
		return nil, l.wrap("creating the loader's tables in schema "+cfg.LoaderSchema, err)
	}
	log.Info("connected to warehouse", "host", cc.Host, "database", cc.Database, "user", cc.User, "loader_schema", cfg.LoaderSchema)
	wctx, stop := context.WithCancel(context.Background())
	l.stopWatch, l.watching = stop, make(chan struct{})
	go func() {
		defer close(l.watching)
		if cfg.IdleInTxTimeout > 0 {
			l.watchStalls(wctx, cfg.IdleInTxTimeout)
		}
	}()
	return l, nil
}

// Close closes every connection. Loads in flight fail.
func (l *Loader) Close() {
	l.stopWatch()
	<-l.watching
	l.pool.Close()
}

// StalledSessionsEnded is how many stalled loader sessions (stall.go) this
// loader has ended.
func (l *Loader) StalledSessionsEnded() int64 { return l.stalls.Load() }

// wrap classifies err as an *Error carrying what the loader was doing.
func (l *Loader) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Op: op, Err: err, user: l.user, database: l.database, host: l.host, password: l.password}
}

// bootstrap creates the loader schema and tables that do not exist yet. It
// only issues CREATE for what is missing, so that a loader without CREATE
// on the database runs once an operator has created them.
func (l *Loader) bootstrap(ctx context.Context, loaderSchema string) error {
	return pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", ddlLockKey); err != nil {
			return err
		}
		var schemaExists bool
		var have []string
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
			ARRAY(SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p'))`, loaderSchema).Scan(&schemaExists, &have)
		if err != nil {
			return err
		}
		exists := make(map[string]bool, len(have))
		for _, t := range have {
			exists[t] = true
		}
		var stmts []string
		if !schemaExists {
			stmts = append(stmts, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{loaderSchema}.Sanitize())
		}
		for _, t := range loaderTables(loaderSchema) {
			if !exists[t.name] {
				stmts = append(stmts, t.ddl...)
			}
		}
		if len(stmts) == 0 {
			return nil
		}
		// No arguments: one round trip with the simple protocol.
		_, err = tx.Exec(ctx, strings.Join(stmts, ";\n"))
		return err
	})
}

type loaderTable struct {
	name string
	ddl  []string
}

// loaderTables returns the DDL of the loader's own tables.
func loaderTables(s string) []loaderTable {
	q := func(t string) string { return pgx.Identifier{s, t}.Sanitize() }
	return []loaderTable{
		{tableOffsets, []string{`CREATE TABLE IF NOT EXISTS ` + q(tableOffsets) + ` (
	consumer_group text NOT NULL,
	topic text NOT NULL,
	partition integer NOT NULL,
	next_offset bigint,
	owner text NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (consumer_group, topic, partition))`}},
		// A batch envelope can reject several of its messages: "message"
		// numbers a record's rejections in decode order, so a replay of the
		// record writes the same keys and adds nothing.
		{tableRejected, []string{`CREATE TABLE IF NOT EXISTS ` + q(tableRejected) + ` (
	topic text NOT NULL,
	partition integer NOT NULL,
	"offset" bigint NOT NULL,
	message integer NOT NULL,
	kafka_timestamp timestamptz,
	raw bytea NOT NULL,
	reason text NOT NULL,
	uuid_ts timestamptz NOT NULL,
	PRIMARY KEY (topic, partition, "offset", message))`}},
		// One row per (row, column, value): a producer duplicate's
		// discards add nothing, while two different values discarded for
		// one users/accounts row and column (two identifies) are both kept.
		{tableDiscards, []string{`CREATE TABLE IF NOT EXISTS ` + q(tableDiscards) + ` (
	schema_name text NOT NULL,
	table_name text NOT NULL,
	row_id text NOT NULL,
	column_name text NOT NULL,
	value text NOT NULL,
	reason text NOT NULL,
	received_at timestamptz,
	uuid_ts timestamptz NOT NULL)`,
			`CREATE UNIQUE INDEX IF NOT EXISTS discards_key ON ` + q(tableDiscards) +
				` (schema_name, table_name, row_id, column_name, md5(value))`}},
		{tableLoads, []string{`CREATE TABLE IF NOT EXISTS ` + q(tableLoads) + ` (
	id bigserial PRIMARY KEY,
	consumer_group text NOT NULL,
	owner text NOT NULL,
	started_at timestamptz NOT NULL,
	duration_ms double precision NOT NULL,
	uuid_ts timestamptz NOT NULL,
	records integer NOT NULL,
	messages integer NOT NULL,
	bytes bigint NOT NULL,
	rows jsonb NOT NULL,
	discards integer NOT NULL,
	rejected integer NOT NULL,
	offsets jsonb NOT NULL)`}},
		{tableMergeState, []string{`CREATE TABLE IF NOT EXISTS ` + q(tableMergeState) + ` (
	schema_name text NOT NULL,
	table_name text NOT NULL,
	id text NOT NULL,
	keys jsonb NOT NULL,
	PRIMARY KEY (schema_name, table_name, id))`}},
	}
}

// Claim takes ownership of the partitions' rows in the offsets table for
// owner, creating missing rows, and returns the stored next offset of every
// partition that has one. After Claim, a Load by any other owner for these
// partitions is fenced. All partitions are claimed in one transaction.
func (l *Loader) Claim(ctx context.Context, group, owner string, partitions map[string][]int32) (map[string]map[int32]int64, error) {
	out := make(map[string]map[int32]int64)
	topics := make([]string, 0, len(partitions))
	for t, ps := range partitions {
		if len(ps) > 0 {
			topics = append(topics, t)
		}
	}
	if len(topics) == 0 {
		return out, nil
	}
	// Sorted topics and partitions: two claimers lock rows in one order.
	sort.Strings(topics)
	sql := `INSERT INTO ` + l.offsets + ` (consumer_group, topic, partition, owner, updated_at)
		SELECT $1, $2, p, $3, now() FROM unnest($4::int[]) AS p ORDER BY p
		ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET owner = EXCLUDED.owner, updated_at = now()
		RETURNING partition, next_offset`
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		for _, t := range topics {
			ps := append([]int32(nil), partitions[t]...)
			slices.Sort(ps)
			ps = slices.Compact(ps) // a row twice in one upsert is an error
			batch.Queue(sql, group, t, owner, ps)
		}
		br := tx.SendBatch(ctx, batch)
		defer br.Close()
		for _, t := range topics {
			rows, err := br.Query()
			if err != nil {
				return fmt.Errorf("claiming topic %s: %w", t, err)
			}
			for rows.Next() {
				var p int32
				var next *int64
				if err := rows.Scan(&p, &next); err != nil {
					rows.Close()
					return err
				}
				if next != nil {
					if out[t] == nil {
						out[t] = make(map[int32]int64)
					}
					out[t][p] = *next
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("claiming topic %s: %w", t, err)
			}
		}
		return br.Close()
	})
	if err != nil {
		return nil, l.wrap(fmt.Sprintf("claiming partitions for group %q", group), err)
	}
	return out, nil
}
