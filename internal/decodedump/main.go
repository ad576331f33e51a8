// Command decodedump prints what the decoder makes of a fixed, seeded set
// of records: generated messages, the corpus, pretty-printed copies and
// random mutations of them (most of which are invalid JSON). Two commits'
// outputs compared with cmp show whether a change to the decoder changed
// any row, discard or rejection:
//
//	go run ./internal/decodedump > new.txt
//	git worktree add /tmp/old <commit>
//	cp -r internal/decodedump /tmp/old/internal/
//	(cd /tmp/old && go run ./internal/decodedump) > old.txt
//	cmp old.txt new.txt
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/segwarehouse/segwarehouse/internal/sample"
	"github.com/segwarehouse/segwarehouse/schema"
)

func main() {
	generated := flag.Int("generated", 40000, "generated messages")
	mutations := flag.Int("mutations", 120000, "mutated copies")
	corpus := flag.String("corpus", "schema/testdata/corpus", "directory of corpus records (*.json)")
	flag.Parse()

	inputs := records(*generated, *mutations, *corpus)
	dec, err := schema.NewDecoder(schema.Config{WarehouseID: "wh", MaxRecordBytes: 64 << 10})
	if err != nil {
		log.Fatal(err)
	}
	w := bufio.NewWriter(os.Stdout)
	for i, in := range inputs {
		d := dec.Decode(&schema.Record{Topic: "web", Partition: 1, Offset: int64(i), Timestamp: time.Unix(1700000000, 0), Value: in})
		fmt.Fprintf(w, "%d %+v\n", i, *d)
	}
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
	log.Printf("%d records", len(inputs))
}

// seeds are edge cases the generator does not make: escapes, NUL, big
// numbers, timestamps at the edges, arrays, spaces everywhere, a batch.
var seeds = []string{
	`{"type":"track","messageId":"m1","userId":"u1","event":"Order Completed","properties":{"orderId":"o1","revenue":19.99,"total":20,"coupon":null}}`,
	`{"batch":[{"type":"track","userId":"u","event":"E"},{"type":"x"}],"context":{"ip":"1.2.3.4"},"sentAt":"2024-01-01T00:00:00Z"}`,
	`{"type":"track","userId":"u","event":"E","properties":{"a":"x\u0000y","big":1e400,"neg":-0,"ts":"2024-01-01T00:00:00Z","t2":"2024-02-30T00:00:00Z","t3":"2024-01-01T00:00:00.123456789123Z","t4":"2024-01-01t00:00:00z","arr":[1,"a\"b",{"x":"é"},[]],"o":{ "a" : [ 1 , 2 ] }}}`,
	"{ \"type\" : \"track\" ,\n \"userId\":\"u\",\t\"event\" : \"E\" , \"properties\" : { \"x\" : \"caf\u00e9\", \"y\\u0041\":\"\\n\" } }",
}

func records(generated, mutations int, corpus string) [][]byte {
	var inputs [][]byte
	g := sample.New(11, 2000, 5000, sample.DefaultMix)
	for range generated {
		inputs = append(inputs, g.Next())
	}
	files, err := filepath.Glob(filepath.Join(corpus, "*.json"))
	if err != nil || len(files) == 0 {
		log.Fatalf("no corpus records in %s (run from the repository's root, or set -corpus)", corpus)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			log.Fatal(err)
		}
		inputs = append(inputs, b)
	}
	for _, s := range seeds {
		inputs = append(inputs, []byte(s))
	}
	// Pretty-printed copies: spaces between every token.
	for i := 0; i < min(2000, generated); i++ {
		var m any
		if err := json.Unmarshal(inputs[i], &m); err != nil {
			log.Fatal(err)
		}
		b, err := json.MarshalIndent(m, " ", "\t ")
		if err != nil {
			log.Fatal(err)
		}
		inputs = append(inputs, b)
	}
	r := rand.New(rand.NewPCG(5, 6))
	base := len(inputs)
	alphabet := []byte("{}[]\",:\\ \t\n0123456789.eE+-tfnaluZT\x00\xff\xc3\xa9u")
	for range mutations {
		b := append([]byte(nil), inputs[r.IntN(base)]...)
		for range 1 + r.IntN(3) {
			if len(b) == 0 {
				break
			}
			p := r.IntN(len(b))
			c := alphabet[r.IntN(len(alphabet))]
			switch r.IntN(4) {
			case 0:
				b[p] = c
			case 1:
				b = append(b[:p], b[p+1:]...)
			case 2:
				b = append(b[:p], append([]byte{c}, b[p:]...)...)
			case 3:
				b = b[:p]
			}
		}
		inputs = append(inputs, b)
	}
	return inputs
}
