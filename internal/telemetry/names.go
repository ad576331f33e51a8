// Package telemetry sets up OpenTelemetry for the binary: metrics served
// on /metrics in the Prometheus format (and over OTLP when configured),
// traces exported over OTLP when configured, and the names of everything
// exported, so that dashboards and alerts can be checked against them.
package telemetry

// Metric is one exported metric as Prometheus sees it.
type Metric struct {
	Name   string   // Prometheus name, with the _total / _seconds suffix
	Type   string   // counter, gauge or histogram
	Labels []string // label names, besides the exporter's own
	Help   string
}

// Metrics lists every metric the binary exports. The Grafana dashboard and
// the Helm chart's alerts may use only these names (a test checks it), and a
// test scrapes /metrics to prove each one is really exported.
var Metrics = []Metric{
	{"segwarehouse_records_consumed_total", "counter", nil, "Kafka records taken into flushes that committed."},
	{"segwarehouse_messages_loaded_total", "counter", nil, "Segment messages loaded (a batch envelope holds several)."},
	{"segwarehouse_rows_loaded_total", "counter", []string{"schema", "table"}, "Rows sent to each warehouse table (before the database drops producer duplicates)."},
	{"segwarehouse_rejected_total", "counter", []string{"reason"}, "Records or messages written to the rejected table, by reason class."},
	{"segwarehouse_discarded_total", "counter", []string{"reason"}, "Values written to the discards table, by reason class."},
	{"segwarehouse_flushes_total", "counter", []string{"result"}, "Flush attempts by result: ok, retry, fenced, poison."},
	{"segwarehouse_flush_duration_seconds", "histogram", nil, "Duration of a committed flush's Postgres transaction (DDL, COPY, merges, commit)."},
	{"segwarehouse_consumer_lag", "gauge", []string{"topic", "partition"}, "Records in Kafka not yet loaded: high watermark minus the offset stored in Postgres."},
	{"segwarehouse_ddl_statements_total", "counter", []string{"kind"}, "DDL statements run: create_schema, create_table, add_column."},
	{"segwarehouse_retries_total", "counter", nil, "Flush retries after a retryable Postgres error."},
	{"segwarehouse_stalled_sessions_ended_total", "counter", nil, "Loader sessions stalled in the middle of a statement inside their flush, which other sessions waited for, that this pod ended."},
	{"segwarehouse_rebalances_total", "counter", nil, "Partition assignments and revocations seen by this member."},
	{"segwarehouse_ready", "gauge", nil, "1 when /readyz answers ready, else 0."},
}
