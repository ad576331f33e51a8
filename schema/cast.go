package schema

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Text returns the value as text: what a text column stores and what a
// discard records.
func (v Value) Text() string {
	switch v.Kind {
	case KindString, KindNumber, KindArray:
		return v.Str
	case KindInt:
		return strconv.FormatInt(v.Int, 10)
	case KindBool:
		if v.Bool() {
			return "true"
		}
		return "false"
	case KindTime:
		if v.Str != "" {
			return v.Str
		}
		return v.Time().Format(time.RFC3339Nano)
	}
	return ""
}

func (k Kind) String() string {
	switch k {
	case KindString, KindTime:
		return "string"
	case KindInt:
		return "integer"
	case KindNumber:
		return "number"
	case KindBool:
		return "boolean"
	case KindArray:
		return "array"
	}
	return "null"
}

// CastError says why a value cannot be stored in a column of a type.
type CastError struct {
	From Kind
	To   Type
	Why  string
}

func (e *CastError) Error() string {
	if e.Why != "" {
		return fmt.Sprintf("cannot store %s in a %s column: %s", e.From, e.To, e.Why)
	}
	return fmt.Sprintf("cannot store %s in a %s column", e.From, e.To)
}

// Cast converts v to a value of column type t following SPEC §7's table.
// The result's Kind is the kind that t stores (text → KindString or
// KindArray, whose Str is the text; bigint → KindInt, numeric → KindNumber,
// boolean → KindBool, timestamptz → KindTime). NULL casts to NULL.
func Cast(v Value, t Type) (Value, error) {
	if v.Kind == KindNull {
		return v, nil
	}
	fail := func(why string) (Value, error) { return Value{}, &CastError{From: v.Kind, To: t, Why: why} }
	switch t {
	case Text:
		switch v.Kind {
		case KindNumber:
			if isIntegerLiteral(v.Str) {
				// An integer beyond int64 keeps its digits (integer →
				// decimal text); through float64 it would lose them.
				return Value{Kind: KindString, Str: v.Str}, nil
			}
			return Value{Kind: KindString, Str: shortestNumber(v.Str)}, nil
		case KindString, KindArray:
			// An array is already its JSON text; keeping the value as it
			// is spares Conform a copy of the row.
			return v, nil
		}
		return Value{Kind: KindString, Str: v.Text()}, nil
	case BigInt:
		switch v.Kind {
		case KindInt:
			return v, nil
		case KindNumber:
			i, ok := truncateNumber(v.Str)
			if !ok {
				return fail("out of bigint range")
			}
			return Value{Kind: KindInt, Int: i}, nil
		case KindString, KindTime:
			i, err := strconv.ParseInt(v.Text(), 10, 64)
			if err != nil {
				return fail("not an integer")
			}
			return Value{Kind: KindInt, Int: i}, nil
		}
	case Numeric:
		switch v.Kind {
		case KindInt:
			return Value{Kind: KindNumber, Str: strconv.FormatInt(v.Int, 10)}, nil
		case KindNumber:
			if !validNumeric(v.Str) {
				return fail("out of numeric range")
			}
			return v, nil
		case KindString, KindTime:
			s := v.Text()
			if !IsNumberLiteral(s) {
				return fail("not a number")
			}
			if !validNumeric(s) {
				return fail("out of numeric range")
			}
			return Value{Kind: KindNumber, Str: s}, nil
		}
	case Boolean:
		switch v.Kind {
		case KindBool:
			return v, nil
		case KindString:
			switch v.Str {
			case "true":
				return BoolValue(true), nil
			case "false":
				return BoolValue(false), nil
			}
			return fail("not true or false")
		}
	case Timestamptz:
		switch v.Kind {
		case KindTime:
			return v, nil
		case KindString:
			tm, ok := ParseTimestamp(v.Str)
			if !ok {
				return fail("not an RFC 3339 date-time with a zone")
			}
			return TimeValue(tm, v.Str), nil
		}
	}
	return fail("")
}

// IsNumberLiteral reports whether s has JSON number syntax.
func IsNumberLiteral(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	if i >= len(s) {
		return false
	}
	if s[i] == '0' {
		i++
	} else if s[i] >= '1' && s[i] <= '9' {
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	} else {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	return i == len(s)
}

// validNumeric reports whether Postgres's numeric type can hold the JSON
// number literal s: at most 131072 digits before the point and 16383 after
// it. Only the exponent can push a JSON number past that in practice.
func validNumeric(s string) bool {
	exp := 0
	mant := s
	for i := 0; i < len(s); i++ {
		if s[i] == 'e' || s[i] == 'E' {
			e, err := strconv.Atoi(s[i+1:])
			if err != nil {
				return false
			}
			exp = e
			mant = s[:i]
			break
		}
	}
	intDigits, fracDigits := 0, 0
	dot := false
	for i := 0; i < len(mant); i++ {
		switch c := mant[i]; {
		case c == '.':
			dot = true
		case c >= '0' && c <= '9':
			if dot {
				fracDigits++
			} else {
				intDigits++
			}
		}
	}
	if intDigits+exp > 131072 {
		return false
	}
	if fracDigits-exp > 16383 {
		return false
	}
	return true
}

// truncateNumber truncates a JSON number literal toward zero into an int64,
// exactly: the integer part is read from the literal's digits, not through
// float64, whose 53 bits would round 12345678901234567.9 to ...568. ok is
// false when the integer part is outside int64.
func truncateNumber(s string) (int64, bool) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, true
	}
	if !IsNumberLiteral(s) {
		return 0, false
	}
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil || e > 1<<40 || e < -1<<40 {
			// An exponent beyond any literal's length, which its digits
			// cannot make up for: the value is 0 (negative exponent)
			// or, unless all its digits are 0, beyond any int64.
			if s[i+1] == '-' || strings.Trim(mant, "0.") == "" {
				return 0, true
			}
			return 0, false
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	// The value is 0.digits × 10^point.
	point := len(intPart) - (len(intPart+frac) - len(digits)) + exp
	if digits == "" || point <= 0 {
		return 0, true
	}
	if point > 19 {
		return 0, false
	}
	var u uint64
	for i := 0; i < point; i++ {
		d := uint64(0)
		if i < len(digits) {
			d = uint64(digits[i] - '0')
		}
		if u > (math.MaxUint64-d)/10 {
			return 0, false
		}
		u = u*10 + d
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// isIntegerLiteral reports whether s, a JSON number literal, has neither a
// fraction nor an exponent.
func isIntegerLiteral(s string) bool { return !strings.ContainsAny(s, ".eE") }

// shortestNumber renders a JSON number literal as the shortest text that
// reads back as the same float64, as JavaScript and encoding/json do. A
// literal beyond float64's range or precision is kept as it came.
func shortestNumber(s string) string {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return s
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	out := strconv.FormatFloat(f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(out)
		if n >= 4 && out[n-4] == 'e' && out[n-3] == '-' && out[n-2] == '0' {
			out = out[:n-2] + out[n-1:]
		}
	}
	return out
}

// ParseTimestamp parses a full RFC 3339 date-time with a zone
// ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05.123+02:00"), as RFC 3339's
// grammar has it: two-digit fields, a fraction of one or more digits after
// a dot, T or t, Z, z or an offset ±hh:mm. It reports false for anything
// else, including dates without a time, a space for the T, a comma for
// the dot, one-digit fields and a leap second (Postgres has none). The
// time is in UTC.
func ParseTimestamp(s string) (time.Time, bool) {
	// Cheap shape check first: this runs on every string value.
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') {
		return time.Time{}, false
	}
	return parseRFC3339(s)
}

// parseRFC3339 parses "2006-01-02T15:04:05[.fraction](Z|±07:00)" (T and Z
// in either case) field by field, without time.Parse's generality (a
// quarter of its instructions for the common UTC shape) or leniency
// (time.Parse takes a comma for the dot and one-digit hours).
func parseRFC3339(s string) (time.Time, bool) {
	n := len(s)
	if n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	// The zone: Z, or ±hh:mm, offset east of UTC in seconds.
	offset, end := 0, n-1
	switch c := s[n-1]; {
	case c == 'Z' || c == 'z':
	case n >= 25 && (s[n-6] == '+' || s[n-6] == '-') && s[n-3] == ':':
		h0, h1, m0, m1 := s[n-5]-'0', s[n-4]-'0', s[n-2]-'0', s[n-1]-'0'
		if max(h0, h1, m0, m1) > 9 {
			return time.Time{}, false
		}
		oh, om := int(h0)*10+int(h1), int(m0)*10+int(m1)
		if oh > 23 || om > 59 {
			return time.Time{}, false
		}
		offset = oh*3600 + om*60
		if s[n-6] == '-' {
			offset = -offset
		}
		end = n - 6
	default:
		return time.Time{}, false
	}
	// Each field's digits less '0': a byte that is not a digit wraps to
	// more than 9.
	y0, y1, y2, y3 := s[0]-'0', s[1]-'0', s[2]-'0', s[3]-'0'
	mo0, mo1, d0, d1 := s[5]-'0', s[6]-'0', s[8]-'0', s[9]-'0'
	h0, h1, mi0, mi1, s0, s1 := s[11]-'0', s[12]-'0', s[14]-'0', s[15]-'0', s[17]-'0', s[18]-'0'
	if max(y0, y1, y2, y3, mo0, mo1, d0, d1, h0, h1, mi0, mi1, s0, s1) > 9 {
		return time.Time{}, false
	}
	year := int(y0)*1000 + int(y1)*100 + int(y2)*10 + int(y3)
	month, day := int(mo0)*10+int(mo1), int(d0)*10+int(d1)
	hour, minute, sec := int(h0)*10+int(h1), int(mi0)*10+int(mi1), int(s0)*10+int(s1)
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if end > 19 {
		// A fraction: '.', then one or more digits, of which the first
		// nine count (nanoseconds; Postgres keeps six).
		if s[19] != '.' || end < 21 {
			return time.Time{}, false
		}
		digits := 0
		for _, c := range []byte(s[20:end]) {
			if c-'0' > 9 {
				return time.Time{}, false
			}
			if digits < 9 {
				nsec = nsec*10 + int(c-'0')
				digits++
			}
		}
		nsec *= pow10[9-digits]
	} else if end != 19 {
		return time.Time{}, false
	}
	unix := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec) - int64(offset)
	return time.Unix(unix, int64(nsec)).UTC(), true
}

var pow10 = [10]int{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is the number of days from 1970-01-01 to the given date of
// the proleptic Gregorian calendar, for years 0 to 9999 (Howard Hinnant's
// days_from_civil, with the year moved 400 years on, one whole cycle of
// 146,097 days, so that every division is of a non-negative number).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	y += 400
	era := uint(y) / 400
	yoe := uint(y) - era*400
	mp := uint(m+9) % 12
	doy := (153*mp+2)/5 + uint(d) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468 - 146097
}
