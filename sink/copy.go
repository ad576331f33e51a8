package sink

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/segwarehouse/segwarehouse/schema"
)

// copyColumns returns the columns to write for rows of a table: the
// table's columns that some row holds a value for, in the table's order,
// then uuid_ts when the table has it. uuid_ts is always the loader's.
func copyColumns(def *schema.TableDef, rows []schema.Row) (names []string, types []schema.Type) {
	present := make(map[string]bool)
	for i := range rows {
		for _, c := range rows[i].Cols {
			if !c.Val.IsNull() {
				present[c.Name] = true
			}
		}
	}
	hasUUIDTS := false
	for _, c := range def.Cols {
		if c.Name == "uuid_ts" {
			hasUUIDTS = true
			continue
		}
		if present[c.Name] {
			names = append(names, c.Name)
			types = append(types, c.Type)
		}
	}
	if hasUUIDTS {
		names = append(names, "uuid_ts")
		types = append(types, schema.Timestamptz)
	}
	return names, types
}

// rowSource feeds rows to pgx's CopyFrom. The values slice is reused:
// CopyFrom encodes a row before asking for the next.
type rowSource struct {
	rows  []schema.Row
	names []string
	types []schema.Type
	index map[string]int
	uuid  int // position of uuid_ts, -1 when absent
	ts    time.Time
	// cols, when set, replaces rows[i].Cols (merged rows).
	cols [][]schema.Col

	i    int
	vals []any
	err  error
}

func newRowSource(rows []schema.Row, cols [][]schema.Col, names []string, types []schema.Type, uuidTS time.Time) *rowSource {
	s := &rowSource{rows: rows, cols: cols, names: names, types: types, ts: uuidTS, uuid: -1,
		index: make(map[string]int, len(names)), vals: make([]any, len(names))}
	for i, n := range names {
		if n == "uuid_ts" {
			s.uuid = i
			continue
		}
		s.index[n] = i
	}
	return s
}

func (s *rowSource) len() int {
	if s.cols != nil {
		return len(s.cols)
	}
	return len(s.rows)
}

// reset rewinds the source for another CopyFrom.
func (s *rowSource) reset() { s.i, s.err = 0, nil }

func (s *rowSource) Next() bool {
	if s.err != nil || s.i >= s.len() {
		return false
	}
	s.i++
	return true
}

func (s *rowSource) Values() ([]any, error) {
	for j := range s.vals {
		s.vals[j] = nil
	}
	var cols []schema.Col
	var id string
	if s.cols != nil {
		cols = s.cols[s.i-1]
	} else {
		cols = s.rows[s.i-1].Cols
		id = s.rows[s.i-1].ID
	}
	for _, c := range cols {
		j, ok := s.index[c.Name]
		if !ok {
			continue
		}
		v, err := pgValue(c.Val, s.types[j])
		if err != nil {
			s.err = fmt.Errorf("row %q column %s: %w", id, c.Name, err)
			return nil, s.err
		}
		s.vals[j] = v
	}
	if s.uuid >= 0 {
		s.vals[s.uuid] = s.ts
	}
	return s.vals, nil
}

func (s *rowSource) Err() error { return s.err }

// pgValue converts a value cast to column type t (schema.Conform) into
// what pgx encodes for that type: text → string, bigint → int64, numeric →
// pgtype.Numeric (exact, from the decimal literal), boolean → bool,
// timestamptz → time.Time, NULL → nil.
func pgValue(v schema.Value, t schema.Type) (any, error) {
	if v.Kind == schema.KindNull {
		return nil, nil
	}
	switch t {
	case schema.Text:
		if v.Kind == schema.KindString {
			return v.Str, nil
		}
		return v.Text(), nil
	case schema.BigInt:
		if v.Kind == schema.KindInt {
			return v.Int, nil
		}
	case schema.Numeric:
		switch v.Kind {
		case schema.KindInt:
			return pgtype.Numeric{Int: big.NewInt(v.Int), Valid: true}, nil
		case schema.KindNumber:
			return parseNumeric(v.Str)
		}
	case schema.Boolean:
		if v.Kind == schema.KindBool {
			return v.Bool, nil
		}
	case schema.Timestamptz:
		if v.Kind == schema.KindTime {
			return v.Time, nil
		}
	}
	return nil, fmt.Errorf("a %s value was not cast to the column type %s", v.Kind, t)
}

// parseNumeric converts a JSON number literal into an exact
// pgtype.Numeric: the digits as an integer and a decimal exponent, so
// 1e400, -0.5, 12345678901234567890123 and 1.5E-7 reach Postgres exactly as
// numeric's own input function would read them (same value and display
// scale).
func parseNumeric(s string) (pgtype.Numeric, error) {
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return pgtype.Numeric{Int: big.NewInt(i), Valid: true}, nil
		}
	}
	mant, exp := s, int64(0)
	if k := strings.IndexAny(s, "eE"); k >= 0 {
		e, err := strconv.ParseInt(s[k+1:], 10, 32)
		if err != nil {
			return pgtype.Numeric{}, fmt.Errorf("numeric literal %q: exponent out of range", s)
		}
		mant, exp = s[:k], e
	}
	if k := strings.IndexByte(mant, '.'); k >= 0 {
		exp -= int64(len(mant) - k - 1)
		mant = mant[:k] + mant[k+1:]
	}
	n, ok := new(big.Int).SetString(mant, 10)
	if !ok {
		return pgtype.Numeric{}, fmt.Errorf("%q is not a number", s)
	}
	if exp < -1<<31 || exp > 1<<31-1 {
		return pgtype.Numeric{}, fmt.Errorf("numeric literal %q: exponent out of range", s)
	}
	return pgtype.Numeric{Int: n, Exp: int32(exp), Valid: true}, nil
}
