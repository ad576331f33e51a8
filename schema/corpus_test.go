package schema

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the corpus's .golden files from the decoder's output")

// golden is the reviewable form of a decoded record: per row the table and
// each column as "type value".
type golden struct {
	Rows     []goldenRow `json:"rows"`
	Discards []string    `json:"discards,omitempty"`
	Rejected []string    `json:"rejected,omitempty"`
}

type goldenRow struct {
	Table string            `json:"table"`
	Merge bool              `json:"merge,omitempty"`
	ID    string            `json:"id"`
	Cols  map[string]string `json:"cols"`
}

func render(d *Decoded) golden {
	var g golden
	for _, r := range d.Rows {
		gr := goldenRow{Table: r.Table.String(), Merge: r.Merge, ID: r.Row.ID, Cols: map[string]string{}}
		for _, c := range r.Row.Cols {
			gr.Cols[c.Name] = c.Val.Type().SQL() + " " + c.Val.Text()
		}
		g.Rows = append(g.Rows, gr)
	}
	for _, x := range d.Discards {
		g.Discards = append(g.Discards, x.Table+"."+x.Column+" = "+x.Value+" ("+x.Code+": "+x.Reason+")")
	}
	for _, x := range d.Rejected {
		g.Rejected = append(g.Rejected, x.Code+": "+x.Reason)
	}
	return g
}

// TestCorpus decodes realistic analytics.js, iOS, Android, server-library
// and batch-envelope payloads and compares the rows with the reviewed
// .golden files (go test ./schema -run TestCorpus -update rewrites them;
// review the diff).
func TestCorpus(t *testing.T) {
	files, _ := filepath.Glob("testdata/corpus/*.json")
	var inputs []string
	for _, f := range files {
		if !strings.HasSuffix(f, ".golden.json") {
			inputs = append(inputs, f)
		}
	}
	if len(inputs) < 8 {
		t.Fatalf("corpus has %d inputs", len(inputs))
	}
	sort.Strings(inputs)
	dec, err := NewDecoder(Config{WriteKeys: map[string]string{"wk_web": "Website", "wk_server": "Backend"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			d := dec.Decode(&Record{Topic: "segment", Partition: 0, Offset: 7, Timestamp: time.Date(2024, 2, 14, 9, 40, 0, 0, time.UTC), Value: raw})
			got, _ := json.MarshalIndent(render(d), "", "  ")
			gf := strings.TrimSuffix(in, ".json") + ".golden.json"
			if *update {
				if err := os.WriteFile(gf, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(gf)
			if err != nil {
				t.Fatalf("%v (run with -update to create it, then review it)", err)
			}
			if strings.TrimSpace(string(want)) != strings.TrimSpace(string(got)) {
				t.Errorf("%s differs from %s:\n%s", in, gf, got)
			}
		})
	}
}
