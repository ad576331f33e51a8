package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// waitLog waits until the loader's output contains s n times.
func (l *loader) waitLog(t *testing.T, s string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Count(l.out.String(), s) >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("loader never logged %q %d times:\n%s", s, n, tail(l.out.String(), 30))
}

// TestStaticMembership: with SEGWH_KAFKA_INSTANCE_ID, a loader killed and
// restarted within the session timeout takes its partitions back as the
// same member: the other member keeps its partitions (no revocation, no new
// assignment), the restarted one resumes from the offsets stored in
// Postgres, and every event is loaded once.
func TestStaticMembership(t *testing.T) {
	dsn, ldsn := warehouse(t)
	b := newBroker(t, 4, "web")
	env := func(id string) map[string]string {
		e := loaderEnv(b, ldsn, "web")
		e["SEGWH_KAFKA_INSTANCE_ID"] = id
		e["SEGWH_KAFKA_SESSION_TIMEOUT"] = "20s"
		return e
	}
	produce := func(from, n int) {
		var recs []*kgo.Record
		for i := from; i < from+n; i++ {
			recs = append(recs, &kgo.Record{Topic: "web", Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf(`{"type":"track","messageId":"s%d","userId":"u%d","event":"Static"}`, i, i))})
		}
		b.produce(t, recs...)
	}
	a := startLoader(t, env("pod-a"))
	a.waitLog(t, "partition assigned", 4, 30*time.Second)
	bl := startLoader(t, env("pod-b"))
	bl.waitLog(t, "partition assigned", 2, 30*time.Second)
	produce(0, 400)
	waitCaughtUp(t, b, dsn, "e2e", time.Minute, "web")
	time.Sleep(time.Second) // let the group settle
	baddr := bl.httpAddr(t)
	generations := sum(scrape(t, baddr), "segwarehouse_rebalances_total")
	revokedBefore := strings.Count(bl.out.String(), "partition revoked") + strings.Count(bl.out.String(), "partition lost")
	assignedBefore := strings.Count(bl.out.String(), "partition assigned")

	a.kill()
	killed := time.Now()
	a2 := startLoader(t, env("pod-a"))
	a2.waitLog(t, "partition assigned; resuming at the offset stored in Postgres", 2, 30*time.Second)
	back := time.Since(killed)
	t.Logf("pod-a had its partitions back %s after the kill", back.Round(100*time.Millisecond))
	produce(400, 400)
	waitCaughtUp(t, b, dsn, "e2e", time.Minute, "web")

	if n := count(t, dsn, `SELECT count(*) FROM web.static`); n != 800 {
		t.Errorf("web.static has %d rows, want 800", n)
	}
	if n := count(t, dsn, `SELECT count(DISTINCT id) FROM web.static`); n != 800 {
		t.Errorf("%d distinct ids, want 800", n)
	}
	// kfake runs one rebalance when a static member rejoins (so does a
	// dynamic one); the difference is how soon pod-a is back: logged, not
	// asserted (1.8 s static against 11.9 s dynamic here, the dead
	// member's session having to expire first).
	t.Logf("the other member saw %v rebalances while pod-a restarted", sum(scrape(t, baddr), "segwarehouse_rebalances_total")-generations)
	out := bl.out.String()
	if r := strings.Count(out, "partition revoked") + strings.Count(out, "partition lost"); r != revokedBefore {
		t.Errorf("the other member lost partitions while pod-a restarted (%d → %d revocations)", revokedBefore, r)
	}
	if n := strings.Count(out, "partition assigned"); n != assignedBefore {
		t.Errorf("the other member was reassigned while pod-a restarted (%d → %d assignments)", assignedBefore, n)
	}
}
