package sink

import (
	"fmt"
	"testing"
	"time"

	"github.com/segwarehouse/segwarehouse/schema"
)

// trackRow is a realistic row of a track event table: 26 columns plus
// uuid_ts, about 900 bytes.
func trackRow(op, i int, recv time.Time) schema.Row {
	id := fmt.Sprintf("ajs-next-%08d-%08d-5b2c-4f9e-9a1d-%012d", op, i, i)
	ts := recv.Add(-1500 * time.Millisecond)
	cols := []schema.Col{
		col("id", vStr(id)),
		col("received_at", vTime(recv)),
		col("anonymous_id", vStr(fmt.Sprintf("4d6f3b0e-8a2b-4c3d-9e1f-%012d", i%5000))),
		col("user_id", vStr(fmt.Sprintf("user_%07d", i%5000))),
		col("event", vStr("product_added")),
		col("event_text", vStr("Product Added")),
		col("original_timestamp", vTime(ts)),
		col("sent_at", vTime(ts.Add(200*time.Millisecond))),
		col("timestamp", vTime(ts.Add(-300*time.Millisecond))),
		col("context_ip", vStr("203.0.113.42")),
		col("context_library_name", vStr("analytics.js")),
		col("context_library_version", vStr("next-1.53.0")),
		col("context_locale", vStr("en-US")),
		col("context_page_path", vStr("/products/tents/ultralight-2p")),
		col("context_page_referrer", vStr("https://www.google.com/search?q=ultralight+tent+two+person")),
		col("context_page_title", vStr("Ultralight 2P Tent | Outdoor Supply Co.")),
		col("context_page_url", vStr("https://shop.example.com/products/tents/ultralight-2p?utm_source=google&utm_medium=cpc")),
		col("context_user_agent", vStr("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36")),
		col("context_campaign_source", vStr("google")),
		col("context_campaign_medium", vStr("cpc")),
		col("product_id", vStr(fmt.Sprintf("prod_%06d", i%997))),
		col("sku", vStr(fmt.Sprintf("SKU-%06d-GRN", i%997))),
		col("category", vStr("Camping & Hiking / Tents")),
		col("price", vNum(fmt.Sprintf("%d.%02d", 100+i%400, i%100))),
		col("quantity", vInt(int64(1+i%3))),
		col("in_stock", vBool(i%7 != 0)),
	}
	return schema.Row{ID: id, ReceivedAt: recv, Cols: cols, Pos: schema.Pos{Topic: testTopic, Offset: int64(i)}}
}

// BenchmarkLoad measures Load of one flush of 20,000 rows into a
// 27-column track table (the table exists; every id is new).
func BenchmarkLoad(b *testing.B) {
	const rows = 20000
	l, _ := newLoader(b)
	claim(b, l, testOwner, 0)
	ref := schema.TableRef{Schema: "bench", Table: "product_added"}
	next := int64(-1)
	mk := func(op int) *schema.Batch {
		tr := &schema.TableRows{Table: ref, Rows: make([]schema.Row, rows)}
		recv := t0.Add(time.Duration(op) * time.Second)
		for i := range tr.Rows {
			tr.Rows[i] = trackRow(op, i, recv)
		}
		from := next
		next = max(next, 0) + rows
		return &schema.Batch{Group: testGroup, Owner: testOwner, Tables: []*schema.TableRows{tr},
			Offsets: []schema.OffsetAdvance{{Topic: testTopic, Partition: 0, From: from, To: next}},
			Records: rows, Messages: rows, Bytes: rows * 900}
	}
	// Create the table outside the measurement.
	if err := l.Load(ctxT(b), mk(-1)); err != nil {
		b.Fatal(err)
	}
	var elapsed time.Duration
	b.ResetTimer()
	for op := 0; op < b.N; op++ {
		b.StopTimer()
		batch := mk(op)
		b.StartTimer()
		start := time.Now()
		if err := l.Load(ctxT(b), batch); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
	}
	b.ReportMetric(float64(rows*b.N)/elapsed.Seconds(), "rows/s")
}

// BenchmarkMergeUsers measures Load of one flush of 5,000 identifies'
// users rows (10 traits each) into a users table where half the users
// exist.
func BenchmarkMergeUsers(b *testing.B) {
	const rows = 5000
	l, _ := newLoader(b)
	claim(b, l, testOwner, 0)
	ref := schema.TableRef{Schema: "bench", Table: "users"}
	next := int64(-1)
	mk := func(op int) *schema.Batch {
		tr := &schema.TableRows{Table: ref, Merge: true, Rows: make([]schema.Row, rows)}
		recv := t0.Add(time.Duration(op) * time.Second)
		for i := range tr.Rows {
			id := fmt.Sprintf("user_%07d", (op*rows/2+i)%1000000)
			cols := []schema.Col{col("id", vStr(id)), col("received_at", vTime(recv))}
			for k := 0; k < 10; k++ {
				cols = append(cols, col(fmt.Sprintf("trait_%d", k), vStr(fmt.Sprintf("value %d of %d", k, op))))
			}
			key := schema.MergeKey(recv, fmt.Sprintf("m-%d-%d", op, i))
			tr.Rows[i] = schema.Row{ID: id, ReceivedAt: recv, Cols: cols, Key: key}
		}
		from := next
		next = max(next, 0) + rows
		return &schema.Batch{Group: testGroup, Owner: testOwner, Tables: []*schema.TableRows{tr},
			Offsets: []schema.OffsetAdvance{{Topic: testTopic, Partition: 0, From: from, To: next}}, Records: rows}
	}
	if err := l.Load(ctxT(b), mk(-1)); err != nil {
		b.Fatal(err)
	}
	var elapsed time.Duration
	b.ResetTimer()
	for op := 0; op < b.N; op++ {
		b.StopTimer()
		batch := mk(op)
		b.StartTimer()
		start := time.Now()
		if err := l.Load(ctxT(b), batch); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
	}
	b.ReportMetric(float64(rows*b.N)/elapsed.Seconds(), "rows/s")
}
