package schema

import (
	"time"
)

// Type is a warehouse column type. A column's type is fixed when the column
// is created and never altered (SPEC §7).
type Type uint8

const (
	TypeUnknown Type = iota
	Text
	BigInt
	Numeric
	Boolean
	Timestamptz
)

// SQL returns the Postgres type name used in DDL.
func (t Type) SQL() string {
	switch t {
	case Text:
		return "text"
	case BigInt:
		return "bigint"
	case Numeric:
		return "numeric"
	case Boolean:
		return "boolean"
	case Timestamptz:
		return "timestamp with time zone"
	}
	return "text"
}

func (t Type) String() string { return t.SQL() }

// ParseType maps a Postgres type name as information_schema.columns.data_type
// reports it back to a Type. Unknown names (a column someone else created)
// map to Text so values are stored as their text form.
func ParseType(pg string) Type {
	switch pg {
	case "text", "character varying", "varchar", "character", "char", "json", "jsonb", "uuid":
		return Text
	case "bigint", "integer", "smallint", "int8", "int4", "int2":
		return BigInt
	case "numeric", "double precision", "real", "decimal", "float8", "float4":
		return Numeric
	case "boolean", "bool":
		return Boolean
	case "timestamp with time zone", "timestamptz", "timestamp without time zone", "timestamp":
		return Timestamptz
	}
	return Text
}

// Kind says what a Value holds. A value decoded from JSON carries the kind
// its JSON form implies; after Cast it carries the kind of its column type.
type Kind uint8

const (
	KindNull   Kind = iota
	KindString      // Str holds the text (NUL-free, valid UTF-8)
	KindInt         // Int holds the value, Str the JSON literal
	KindNumber      // Str holds the decimal literal (JSON number syntax), for numeric
	KindBool        // Bool
	KindTime        // Time holds the instant, Str the original text if any
	KindArray       // Str holds the compact JSON text of the array
)

// Value is one typed column value. The zero Value is NULL. It is kept to
// 32 bytes without pointers but Str, because a flush holds hundreds of
// thousands of them.
//
// Per column type the sink reads: text → Str; bigint → Int; numeric → Str (a
// JSON-syntax decimal literal, e.g. "19.99" or "1e400"); boolean → Bool();
// timestamptz → Time() (Int holds microseconds since the Unix epoch, the
// precision Postgres keeps; Str the original text, if any).
type Value struct {
	Kind Kind
	Str  string
	Int  int64
}

// BoolValue returns a boolean value.
func BoolValue(b bool) Value {
	if b {
		return Value{Kind: KindBool, Int: 1}
	}
	return Value{Kind: KindBool}
}

// TimeValue returns a timestamp value (to the microsecond); text, when not
// empty, is the original text it was parsed from.
func TimeValue(t time.Time, text string) Value {
	return Value{Kind: KindTime, Int: t.UnixMicro(), Str: text}
}

// Bool is the value of a KindBool value.
func (v Value) Bool() bool { return v.Int != 0 }

// Time is the instant of a KindTime value, in UTC.
func (v Value) Time() time.Time { return time.UnixMicro(v.Int).UTC() }

// UnixMicro is the instant of a KindTime value in microseconds since the
// Unix epoch.
func (v Value) UnixMicro() int64 { return v.Int }

// Type is the column type a new column gets for this value (SPEC §7).
func (v Value) Type() Type {
	switch v.Kind {
	case KindString, KindArray:
		return Text
	case KindInt:
		return BigInt
	case KindNumber:
		return Numeric
	case KindBool:
		return Boolean
	case KindTime:
		return Timestamptz
	}
	return TypeUnknown
}

// IsNull reports whether v is NULL.
func (v Value) IsNull() bool { return v.Kind == KindNull }

// Col is one named column value of a row. Name is already a valid,
// unquoted Postgres identifier (≤ 63 bytes, [a-z0-9_]); the sink quotes it.
type Col struct {
	Name string
	Val  Value
}

// TableRef names a warehouse table. Both parts are valid unquoted
// identifiers; every SQL use quotes them.
type TableRef struct {
	Schema string
	Table  string
}

func (t TableRef) String() string { return t.Schema + "." + t.Table }

// Pos is where a row came from in Kafka.
type Pos struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Row is one warehouse row. Cols holds every non-null column of the row,
// each name at most once, including "id" and "received_at" (and for event
// tables the other standard columns); "uuid_ts" is added by the sink at
// load time. ID and ReceivedAt repeat those two columns for quick access.
type Row struct {
	ID         string
	ReceivedAt time.Time
	Cols       []Col
	Pos        Pos
	// Key orders merge rows (users/accounts) from different calls: the
	// greater key wins a column. See MergeKey. Empty for event rows.
	Key string
}

// TableRow is a row with the table it belongs to. Merge is true for
// users/accounts rows, which are merged per SPEC §11 rather than appended.
type TableRow struct {
	Table TableRef
	Merge bool
	Row   Row
}

// Discard is a value that could not be stored as a column value (SPEC §8).
type Discard struct {
	Schema string
	Table  string
	RowID  string
	Column string // column name, or the original key when no name exists
	Value  string // the value as text
	Reason string
	// Code classes the reason for metrics: cast, unnamed_key, collision,
	// column_limit, bad_timestamp, not_object.
	Code       string
	ReceivedAt time.Time
	// Message, for a users/accounts row's discard, is the id of the call's
	// message (see MergeMessage); RowID is then the user's or group's id.
	// Not stored: a loader drops the discards of a call it ignores.
	Message string
}

// Rejected is a Kafka record that could not become a message (SPEC §9).
type Rejected struct {
	Pos       Pos
	Timestamp time.Time // Kafka record timestamp
	Raw       []byte
	Reason    string
	// Code classes the reason for metrics: too_large, empty, invalid_json,
	// not_object, unknown_type, missing_field, bad_field, unnameable,
	// invalid_message, and postgres for a record Postgres refused.
	Code string
}

// Record is the part of a Kafka record that schema needs. The consumer fills
// it from a kgo.Record; schema never sees kgo.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	Value     []byte
	// SourceHeader is the value of the configured source header, "" when
	// the record has none or no header is configured.
	SourceHeader string
}

// Pos returns the record's position.
func (r *Record) Pos() Pos { return Pos{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset} }

// Decoded is what one record becomes: rows (in the order the messages
// appear), the discards found while building them, or a rejection. A record
// whose messages are all routed elsewhere (integrations.Warehouses) yields
// no rows and Skipped > 0.
type Decoded struct {
	Pos      Pos
	Rows     []TableRow
	Discards []Discard
	// Rejected holds the whole record (bad JSON, too large, ...) or, for a
	// batch envelope, each message of it that breaks the rules.
	Rejected []Rejected
	Skipped  int
	Messages int // messages that produced rows
	Bytes    int // size of the record value
	// ends marks, for a batch envelope, where each message's rows and
	// discards end; nil when all of them are one message's.
	ends []msgEnd
}

// msgEnd is the end (exclusive) of one message's rows and discards in a
// Decoded.
type msgEnd struct{ rows, discards int }

// OffsetAdvance moves one partition's stored offset in the loader's offsets
// table. From is the next offset the table is expected to hold (-1: no
// value stored yet); To is the new next offset (last offset in the flush + 1).
type OffsetAdvance struct {
	Topic     string
	Partition int32
	From      int64
	To        int64
}

// Batch is one flush: everything that is written in one Postgres
// transaction, and the offsets that transaction advances.
type Batch struct {
	// Group and Owner fence the offsets update: the update applies only
	// while the offsets row for each partition is owned by Owner (set by
	// the claim at partition assignment) and holds From.
	Group string
	Owner string

	// Tables holds the rows per table in first-seen order. A message whose
	// id is already in the batch is left out whole, rows and discards (the
	// first by offset wins). Merge tables (users/accounts) hold one row per
	// call, several per id when several calls name it: the sink merges
	// them per SPEC §11 once their values are cast, so that a value that
	// fails its cast never hides an older one (Row.Key orders them).
	Tables   []*TableRows
	Discards []Discard
	Rejected []Rejected
	Offsets  []OffsetAdvance

	Records  int // Kafka records in the batch
	Messages int
	Bytes    int

	// Prepared is the sink's own state for the batch, set by its Prepare
	// ahead of Load; the consumer carries it untouched.
	Prepared any
}

// TableRows is the rows of one table within a batch.
type TableRows struct {
	Table TableRef
	Merge bool
	Rows  []Row
	// Present, set by Conform, tells for each column of the table's
	// definition (same index) whether some row holds a non-NULL value for
	// it.
	Present []bool
}
