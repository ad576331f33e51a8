package schema

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Every cell of SPEC §7's cast table: value kind → column type.
func TestCastTable(t *testing.T) {
	t.Parallel()
	str := func(s string) Value { return Value{Kind: KindString, Str: s} }
	ts := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	integer := Value{Kind: KindInt, Int: 10, Str: "10"}
	float := Value{Kind: KindNumber, Str: "10.75"}
	negFloat := Value{Kind: KindNumber, Str: "-10.75"}
	boolean := BoolValue(true)
	array := Value{Kind: KindArray, Str: `["a",1]`}
	timeStr := TimeValue(ts, "2024-05-06T07:08:09Z")
	const fail = "\x00fail"
	cases := []struct {
		name string
		in   Value
		to   Type
		want string // Text() of the result, or fail
	}{
		// → text
		{"string→text", str("abc"), Text, "abc"},
		{"integer→text", integer, Text, "10"},
		{"float→text shortest", Value{Kind: KindNumber, Str: "10.750"}, Text, "10.75"},
		{"float→text exponent", Value{Kind: KindNumber, Str: "1E21"}, Text, "1e+21"},
		{"float→text small", Value{Kind: KindNumber, Str: "0.0000001"}, Text, "1e-7"},
		{"huge→text kept", Value{Kind: KindNumber, Str: "1e400"}, Text, "1e400"},
		{"integer beyond int64→text keeps its digits", Value{Kind: KindNumber, Str: "12345678901234567891"}, Text, "12345678901234567891"},
		{"negative integer beyond int64→text", Value{Kind: KindNumber, Str: "-98765432109876543210"}, Text, "-98765432109876543210"},
		{"boolean→text", boolean, Text, "true"},
		{"array→text", array, Text, `["a",1]`},
		{"time string→text", timeStr, Text, "2024-05-06T07:08:09Z"},
		// → bigint
		{"string→bigint", str("42"), BigInt, "42"},
		{"bad string→bigint", str("abc"), BigInt, fail},
		{"decimal string→bigint", str("4.2"), BigInt, fail},
		{"integer→bigint", integer, BigInt, "10"},
		{"float→bigint truncates", float, BigInt, "10"},
		{"negative float→bigint toward zero", negFloat, BigInt, "-10"},
		{"huge float→bigint", Value{Kind: KindNumber, Str: "1e30"}, BigInt, fail},
		{"float past 2^53→bigint exactly", Value{Kind: KindNumber, Str: "12345678901234567.9"}, BigInt, "12345678901234567"},
		{"float→bigint at the top", Value{Kind: KindNumber, Str: "9223372036854775807.5"}, BigInt, "9223372036854775807"},
		{"float→bigint at the bottom", Value{Kind: KindNumber, Str: "-9223372036854775808.9"}, BigInt, "-9223372036854775808"},
		{"float just past int64→bigint", Value{Kind: KindNumber, Str: "9223372036854775808.1"}, BigInt, fail},
		{"integer past int64→bigint", Value{Kind: KindNumber, Str: "9223372036854775808"}, BigInt, fail},
		{"exponent→bigint", Value{Kind: KindNumber, Str: "1.2345678901234567891e18"}, BigInt, "1234567890123456789"},
		{"small exponent→bigint", Value{Kind: KindNumber, Str: "0.000000000000000000012345e21"}, BigInt, "12"},
		{"fraction→bigint", Value{Kind: KindNumber, Str: "-0.5"}, BigInt, "0"},
		{"tiny→bigint", Value{Kind: KindNumber, Str: "1e-400"}, BigInt, "0"},
		{"vast exponent→bigint", Value{Kind: KindNumber, Str: "1e99999999999999999999"}, BigInt, fail},
		{"vast exponent of 0→bigint", Value{Kind: KindNumber, Str: "0.0e99999999999999999999"}, BigInt, "0"},
		{"vast negative exponent→bigint", Value{Kind: KindNumber, Str: "7e-99999999999999999999"}, BigInt, "0"},
		{"boolean→bigint", boolean, BigInt, fail},
		{"array→bigint", array, BigInt, fail},
		{"time→bigint", timeStr, BigInt, fail},
		// → numeric
		{"string→numeric", str("3.25"), Numeric, "3.25"},
		{"bad string→numeric", str("3,25"), Numeric, fail},
		{"integer→numeric", integer, Numeric, "10"},
		{"float→numeric", float, Numeric, "10.75"},
		{"huge→numeric", Value{Kind: KindNumber, Str: "1e400"}, Numeric, "1e400"},
		{"beyond numeric", Value{Kind: KindNumber, Str: "1e200000"}, Numeric, fail},
		{"boolean→numeric", boolean, Numeric, fail},
		{"array→numeric", array, Numeric, fail},
		// → boolean
		{"true string→boolean", str("true"), Boolean, "true"},
		{"false string→boolean", str("false"), Boolean, "false"},
		{"other string→boolean", str("yes"), Boolean, fail},
		{"integer→boolean", integer, Boolean, fail},
		{"float→boolean", float, Boolean, fail},
		{"boolean→boolean", boolean, Boolean, "true"},
		{"array→boolean", array, Boolean, fail},
		// → timestamptz
		{"RFC 3339 string→timestamptz", str("2024-05-06T09:08:09+02:00"), Timestamptz, "2024-05-06T09:08:09+02:00"},
		{"date only→timestamptz", str("2024-05-06"), Timestamptz, fail},
		{"time→timestamptz", timeStr, Timestamptz, "2024-05-06T07:08:09Z"},
		{"integer→timestamptz", integer, Timestamptz, fail},
		{"float→timestamptz", float, Timestamptz, fail},
		{"boolean→timestamptz", boolean, Timestamptz, fail},
		{"array→timestamptz", array, Timestamptz, fail},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Cast(c.in, c.to)
			if c.want == fail {
				if err == nil {
					t.Fatalf("want failure, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Type() != c.to {
				t.Errorf("result kind %v is not %s", got.Kind, c.to)
			}
			if got.Text() != c.want {
				t.Errorf("got %q want %q", got.Text(), c.want)
			}
		})
	}
	// The cast keeps the instant.
	v, _ := Cast(str("2024-05-06T09:08:09+02:00"), Timestamptz)
	if !v.Time().Equal(ts) {
		t.Errorf("instant %v", v.Time())
	}
}

func TestParseTimestamp(t *testing.T) {
	t.Parallel()
	for s, ok := range map[string]bool{
		"2024-01-02T03:04:05Z":             true,
		"2024-01-02T03:04:05.123456+05:30": true,
		"2024-01-02t03:04:05z":             true,
		"2024-01-02T03:04:05":              false,
		"2024-01-02 03:04:05Z":             false,
		"2024-01-02":                       false,
		"2024-13-02T03:04:05Z":             false,
		"hello":                            false,
		// RFC 3339's grammar, not time.Parse's leniency.
		"2024-01-02T03:04:05,123Z":                         false,
		"2024-01-02T3:04:05.12Z":                           false,
		"2024-01-02T03:04:05.5+2:00":                       false,
		"2024-01-02T03:04:05+24:00":                        false,
		"2024-01-02T03:04:05.Z":                            false,
		"2024-01-02T23:59:60Z":                             false,
		"2024-01-02T03:04:05.1234567890123456789012+02:00": true,
		"2024-01-02T03:04:05.000000000000000000000000001Z": true,
		"2024-01-02T03:04:05-23:59":                        true,
	} {
		if _, got := ParseTimestamp(s); got != ok {
			t.Errorf("%q: %v", s, got)
		}
	}
}

func TestIsNumberLiteral(t *testing.T) {
	t.Parallel()
	for s, ok := range map[string]bool{"0": true, "-1.5e+10": true, "1E5": true, "01": false, "1.": false, ".5": false, "NaN": false, "1.2.3": false, "+1": false, "": false, "-": false} {
		if IsNumberLiteral(s) != ok {
			t.Errorf("%q", s)
		}
	}
}

// TestParseRFC3339MatchesTimeParse checks the parser against time.Parse on
// generated timestamps around every field's limits: whenever parseRFC3339
// accepts, time.Parse accepts the same string (T and Z upper-cased) with
// the same instant; and it accepts every string that time.Parse accepts
// and RFC 3339's grammar allows (rfc3339 below; offsets up to 23:59).
func TestParseRFC3339MatchesTimeParse(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	years := []string{"0000", "0001", "1600", "1700", "1900", "1969", "1970", "2000", "2023", "2024", "2100", "9999", "20x4", "-202"}
	months := []string{"01", "02", "03", "04", "06", "09", "11", "12", "00", "13", "1a", "1"}
	days := []string{"01", "28", "29", "30", "31", "00", "32", "3 "}
	hours := []string{"00", "09", "23", "24", "2:", "3"}
	sixty := []string{"00", "07", "59", "60", "5x", "5"}
	fracs := []string{"", ".", ".0", ".1", ".123", ".123456", ".123456789", ".1234567891", ".000000000012", ".12a", ",5", ".12345678901234567890123"}
	zones := []string{"Z", "Z", "Z", "z", "+02:00", "-00:30", "+23:59", "-24:00", "+2:00", "+02:60", "+0200", "", "ZZ"}
	rfc3339 := regexp.MustCompile(`^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$`)
	accepted := 0
	for range 200000 {
		s := pick(years...) + "-" + pick(months...) + "-" + pick(days...) + pick("T", "T", "T", "t", " ") +
			pick(hours...) + ":" + pick(sixty...) + ":" + pick(sixty...) + pick(fracs...) + pick(zones...)
		upper := s
		if len(s) > 10 {
			upper = s[:10] + strings.ToUpper(s[10:11]) + s[11:]
			if strings.HasSuffix(upper, "z") {
				upper = upper[:len(upper)-1] + "Z"
			}
		}
		want, err := time.Parse(time.RFC3339Nano, upper)
		got, ok := ParseTimestamp(s)
		if ok {
			accepted++
			if err != nil {
				t.Fatalf("%q: ParseTimestamp accepts, time.Parse: %v", s, err)
			}
			if !got.Equal(want) || got.Location() != time.UTC {
				t.Fatalf("%q: ParseTimestamp %v, time.Parse %v", s, got, want)
			}
			if !rfc3339.MatchString(s) {
				t.Fatalf("%q: ParseTimestamp accepts what RFC 3339 does not", s)
			}
		} else if err == nil && rfc3339.MatchString(s) {
			t.Fatalf("%q: an RFC 3339 date-time that time.Parse takes is refused", s)
		}
	}
	if accepted < 1000 {
		t.Fatalf("only %d of the generated strings were accepted", accepted)
	}
}

// truncateNumber agrees with exact rational arithmetic on random literals
// around int64's limits and float64's 53 bits.
func TestTruncateNumberExact(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	lo, hi := big.NewInt(math.MinInt64), big.NewInt(math.MaxInt64)
	for range 20000 {
		var b strings.Builder
		if rng.IntN(2) == 0 {
			b.WriteByte('-')
		}
		n := 1 + rng.IntN(22)
		b.WriteByte(byte('1' + rng.IntN(9)))
		for range n - 1 {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		if rng.IntN(2) == 0 {
			b.WriteByte('.')
			for range 1 + rng.IntN(6) {
				b.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		if rng.IntN(3) == 0 {
			fmt.Fprintf(&b, "e%d", rng.IntN(41)-20)
		}
		lit := b.String()
		r, ok := new(big.Rat).SetString(lit)
		if !ok {
			t.Fatalf("big.Rat refuses %s", lit)
		}
		want := new(big.Int).Quo(r.Num(), r.Denom()) // truncates toward zero
		inRange := want.Cmp(lo) >= 0 && want.Cmp(hi) <= 0
		got, ok := truncateNumber(lit)
		if ok != inRange || (ok && got != want.Int64()) {
			t.Fatalf("truncateNumber(%s) = %d, %v; want %s, in range %v", lit, got, ok, want, inRange)
		}
	}
}
