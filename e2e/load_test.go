package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
	"github.com/segwarehouse/segwarehouse/internal/sample"
)

// TestMixedLoad produces a realistic mix with franz-go (batch envelopes,
// producer duplicates, bad records) over 6 partitions and checks the
// invariants: every message id loaded once, tracks rows equal event-table
// rows, every bad record in rejected, offsets equal the end offsets.
func TestMixedLoad(t *testing.T) {
	dsn, ldsn := warehouse(t)
	b := newBroker(t, 6, "events")
	gen := sample.New(42, 25, 500, sample.DefaultMix)
	ids := map[string]string{} // messageId → type
	var recs []*kgo.Record
	const n = 20000
	bad := 0
	for i := 0; i < n; i++ {
		m := gen.NextMap()
		var v []byte
		if i%1000 != 999 {
			ids[m["messageId"].(string)] = m["type"].(string)
		}
		switch {
		case i%1000 == 999:
			bad++
			v = []byte(fmt.Sprintf(`{"type":"track","messageId":"bad-%d"`, i))
		case i%50 == 0:
			m2 := gen.NextMap()
			ids[m2["messageId"].(string)] = m2["type"].(string)
			v, _ = json.Marshal(map[string]any{"batch": []any{m, m2}, "sentAt": "2026-11-01T00:00:00Z"})
		default:
			v, _ = json.Marshal(m)
		}
		key, _ := m["userId"].(string)
		recs = append(recs, &kgo.Record{Topic: "events", Key: []byte(key), Value: v})
		if i%100 == 7 { // a producer retry: the same message again
			recs = append(recs, &kgo.Record{Topic: "events", Key: []byte(key), Value: v})
		}
	}
	b.produce(t, recs...)
	env := loaderEnv(b, ldsn, "events")
	env["SEGWH_FLUSH_ROWS"] = "3000"
	startLoader(t, env)
	waitCaughtUp(t, b, dsn, "e2e", 3*time.Minute, "events")

	byType := map[string]int64{}
	for _, typ := range ids {
		byType[typ]++
	}
	for typ, table := range map[string]string{"track": "tracks", "page": "pages", "identify": "identifies", "group": "groups", "screen": "screens", "alias": "aliases"} {
		got := count(t, dsn, `SELECT count(*) FROM events.`+table)
		distinct := count(t, dsn, `SELECT count(DISTINCT id) FROM events.`+table)
		if got != byType[typ] || distinct != got {
			t.Errorf("%s: %d rows, %d distinct ids, want %d", table, got, distinct, byType[typ])
		}
	}
	var eventRows int64
	for _, r := range pgtest.Query(t, dsn, `SELECT DISTINCT event FROM events.tracks`) {
		tb := r[0].(string)
		c := count(t, dsn, `SELECT count(*) FROM events.`+tb)
		if d := count(t, dsn, `SELECT count(DISTINCT id) FROM events.`+tb); d != c {
			t.Errorf("%s: %d rows but %d ids", tb, c, d)
		}
		eventRows += c
	}
	if eventRows != byType["track"] {
		t.Errorf("event tables hold %d rows, tracks %d", eventRows, byType["track"])
	}
	if got := count(t, dsn, `SELECT count(*) FROM _segwarehouse.rejected`); got != int64(bad) {
		t.Errorf("rejected %d, want %d", got, bad)
	}
	users := count(t, dsn, `SELECT count(DISTINCT user_id) FROM events.identifies`)
	if got := count(t, dsn, `SELECT count(*) FROM events.users`); got != users {
		t.Errorf("users %d, distinct identified users %d", got, users)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestDevCommand runs what `make run` runs, briefly, and checks that Segment
// tables fill and the progress line is printed.
func TestDevCommand(t *testing.T) {
	dsn, ldsn := warehouse(t)
	port := freePort(t)
	cmd := exec.Command(binary, "dev")
	cmd.Env = []string{
		"PATH=/usr/bin:/bin", "SEGWH_DATABASE_URL=" + ldsn,
		fmt.Sprintf("SEGWH_DEV_BROKER_PORT=%d", port), "SEGWH_DEV_DURATION=9s", "SEGWH_DEV_RATE=400",
		"SEGWH_PROGRESS_EVERY=2s", "SEGWH_HTTP_ADDR=127.0.0.1:0",
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dev: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{fmt.Sprintf("embedded Kafka broker on 127.0.0.1:%d", port), "events/s", "kcat -P"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	for _, tb := range []string{"web.tracks", "web.pages", "ios.screens", "server.identifies", "server.users", "server.accounts"} {
		if n := count(t, dsn, `SELECT count(*) FROM `+tb); n == 0 {
			t.Errorf("%s is empty", tb)
		}
	}
	if n := count(t, dsn, `SELECT count(*) FROM _segwarehouse.rejected`); n == 0 {
		t.Errorf("dev produces a bad record now and then; none was rejected")
	}
}
