package sink

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/segwarehouse/segwarehouse/internal/pgtest"
)

// TestAppendNumericMatchesPostgres sends literals through the binary
// encoder into Postgres and compares Postgres's text form with what
// Postgres makes of the same literal typed as text: every digit and the
// scale must survive.
func TestAppendNumericMatchesPostgres(t *testing.T) {
	t.Parallel()
	lits := []string{"0", "-0", "0.0", "0.000", "1", "-1", "10", "10.50", "19.99", "-19.99", "0.5", "-0.5", "1e400", "-1.5e-400",
		"1.5E-7", "12345678901234567890123", "9999", "10000", "10001", "0.0001", "0.00001", "123.456e2", "123.456e-2",
		"1e0", "1E+5", "100e-2", "3.14159265358979323846264338327950288", "9223372036854775807", "-9223372036854775808"}
	rng := rand.New(rand.NewPCG(7, 9))
	for i := 0; i < 300; i++ {
		lit := fmt.Sprintf("%d", rng.Int64N(1_000_000_000))
		if rng.IntN(2) == 0 {
			lit += fmt.Sprintf(".%0*d", 1+rng.IntN(9), rng.IntN(1000))
		}
		if rng.IntN(3) == 0 {
			lit += fmt.Sprintf("e%d", rng.IntN(40)-20)
		}
		if rng.IntN(2) == 0 {
			lit = "-" + lit
		}
		lits = append(lits, lit)
	}
	dsn := pgtest.NewDB(t)
	ctx := context.Background()
	conn := pgtest.Connect(t, ctx, dsn)
	if _, err := conn.Exec(ctx, `CREATE TABLE n (i int, v numeric)`); err != nil {
		t.Fatal(err)
	}
	// Binary COPY stream by hand: header, rows, trailer.
	var buf []byte
	var err error
	buf = append(buf, "PGCOPY\n\xff\r\n\x00"...)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0)
	for i, lit := range lits {
		buf = append(buf, 0, 2, 0, 0, 0, 4, byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
		if buf, err = appendNumeric(buf, lit); err != nil {
			t.Fatalf("%s: %v", lit, err)
		}
	}
	buf = append(buf, 0xff, 0xff)
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(string(buf)), `COPY n (i, v) FROM STDIN (FORMAT binary)`); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT i, v::text, (($1::text[])[i+1])::numeric::text FROM n ORDER BY i`, lits)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var i int
		var got, want string
		if err := rows.Scan(&i, &got, &want); err != nil {
			t.Fatal(err)
		}
		n++
		if got != want {
			t.Errorf("%s: binary gives %s, Postgres's own parse %s", lits[i], got, want)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(lits) {
		t.Fatalf("%d rows, want %d", n, len(lits))
	}
}
