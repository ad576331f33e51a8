package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segwarehouse/segwarehouse/internal/telemetry"
)

var httpAddrRE = regexp.MustCompile(`serving health and metrics"? addr=(\S+)`)

// httpAddr waits for the loader to log its HTTP address.
func (l *loader) httpAddr(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := httpAddrRE.FindStringSubmatch(l.out.String()); m != nil {
			return m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the loader never logged its HTTP address")
	return ""
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape parses a Prometheus text exposition into series → value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	code, body := get(t, "http://"+addr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	out := map[string]float64{}
	s := bufio.NewScanner(strings.NewReader(body))
	for s.Scan() {
		line := s.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad line %q", line)
		}
		out[line[:i]] = v
	}
	noSecrets(t, "/metrics", body)
	return out
}

// sum adds every series of a metric whose labels contain all of with.
func sum(m map[string]float64, name string, with ...string) float64 {
	var total float64
	for series, v := range m {
		base := series
		if i := strings.IndexByte(series, '{'); i >= 0 {
			base = series[:i]
		}
		if base != name {
			continue
		}
		ok := true
		for _, w := range with {
			if !strings.Contains(series, w) {
				ok = false
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// TestMetricsAndProbes scrapes /metrics after a real load: every metric the
// dashboard may use is exported and the counters equal what was loaded;
// /healthz and /readyz answer.
func TestMetricsAndProbes(t *testing.T) {
	_, ldsn := warehouse(t)
	b := newBroker(t, 3, "web")
	l := startLoader(t, loaderEnv(b, ldsn, "web"))
	addr := l.httpAddr(t)
	if code, body := get(t, "http://"+addr+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("/healthz: %d %s", code, body)
	}
	var recs []*kgo.Record
	for i := 0; i < 300; i++ {
		recs = append(recs, rec(fmt.Sprintf(`{"type":"track","messageId":"m%d","userId":"u%d","event":"Metric %d","properties":{"n":%d}}`, i, i%7, i%3, i)))
	}
	recs = append(recs, rec(`not json`))
	late := rec(`{"type":"track","messageId":"late","userId":"u","event":"Metric 0","properties":{"n":"not a number"}}`)
	for _, r := range append(recs, late) {
		r.Topic = "web"
	}
	b.produce(t, recs...)
	waitCaughtUp(t, b, ldsn, "e2e", time.Minute, "web")
	// In a later flush, so that n is already a bigint column: a discard.
	b.produce(t, late)
	recs = append(recs, late)
	waitCaughtUp(t, b, ldsn, "e2e", time.Minute, "web")

	var m map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		m = scrape(t, addr)
		if sum(m, "segwarehouse_records_consumed_total") == float64(len(recs)) && sum(m, "segwarehouse_ready") == 1 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, want := range telemetry.Metrics {
		name := want.Name
		if want.Type == "histogram" {
			name += "_count"
		}
		found := false
		for series := range m {
			if series == name || strings.HasPrefix(series, name+"{") {
				found = true
			}
		}
		if !found {
			t.Errorf("metric %s is not exported", name)
		}
	}
	checks := []struct {
		name string
		with []string
		want float64
	}{
		{"segwarehouse_records_consumed_total", nil, float64(len(recs))},
		{"segwarehouse_messages_loaded_total", nil, float64(len(recs) - 1)},
		{"segwarehouse_rows_loaded_total", []string{`schema="web"`, `table="tracks"`}, float64(len(recs) - 1)},
		{"segwarehouse_rows_loaded_total", []string{`table="metric_0"`}, 101},
		{"segwarehouse_rejected_total", []string{`reason="invalid_json"`}, 1},
		{"segwarehouse_discarded_total", []string{`reason="cast"`}, 1},
		{"segwarehouse_consumer_lag", nil, 0},
		{"segwarehouse_ready", nil, 1},
		{"segwarehouse_ddl_statements_total", []string{`kind="create_table"`}, 4},
		{"segwarehouse_stalled_sessions_ended_total", nil, 0},
	}
	for _, c := range checks {
		if got := sum(m, c.name, c.with...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.with, got, c.want)
		}
	}
	if sum(m, "segwarehouse_flushes_total", `result="ok"`) < 1 || sum(m, "segwarehouse_flush_duration_seconds_count") < 1 {
		t.Errorf("no flush recorded")
	}
	if code, body := get(t, "http://"+addr+"/readyz"); code != 200 {
		t.Errorf("/readyz: %d %s", code, body)
	}
}
