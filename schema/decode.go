package schema

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"
)

// Decoder turns Kafka record values into warehouse rows (SPEC §1–§11). It
// is safe for concurrent use.
//
// JSON is parsed with valyala/fastjson: it keeps number literals exact (a
// numeric column gets the digits that were sent), keeps raw array text for
// array columns without re-encoding, and measured fastest of the decoders
// that do both (see BenchmarkDecode and the README).
type Decoder struct {
	cfg Config
}

// NewDecoder returns a decoder for cfg.
func NewDecoder(cfg Config) (*Decoder, error) {
	if cfg.MaxRecordBytes == 0 {
		cfg.MaxRecordBytes = 512 << 10
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Decoder{cfg: cfg}, nil
}

// Decode decodes one record. It never fails: a record that cannot become
// messages comes back as a rejection with a reason.
func (d *Decoder) Decode(rec *Record) *Decoded {
	out := &Decoded{Pos: rec.Pos(), Bytes: len(rec.Value)}
	reject := func(code, format string, args ...any) *Decoded {
		out.Rows, out.Discards = nil, nil
		out.Rejected = append(out.Rejected[:0], Rejected{
			Pos: out.Pos, Timestamp: rec.Timestamp, Raw: rec.Value, Reason: fmt.Sprintf(format, args...), Code: code,
		})
		return out
	}
	if len(rec.Value) > d.cfg.MaxRecordBytes {
		return reject("too_large", "record is %d bytes, over the limit of %d bytes (SEGWH_MAX_RECORD_BYTES)", len(rec.Value), d.cfg.MaxRecordBytes)
	}
	if len(bytes.TrimSpace(rec.Value)) == 0 {
		return reject("empty", "empty record value (a tombstone or an empty message)")
	}
	st := states.Get().(*state)
	defer states.Put(st)
	st.arena = arena{buf: make([]byte, 0, len(rec.Value))}
	v, err := st.p.ParseBytes(rec.Value)
	if err != nil {
		return reject("invalid_json", "invalid JSON: %s", sanitizeReason(err.Error()))
	}
	if v.Type() != fastjson.TypeObject {
		return reject("not_object", "not a JSON object: the value is %s", typeName(v))
	}
	obj, _ := v.Object()
	if batch := obj.Get("batch"); batch != nil {
		if batch.Type() != fastjson.TypeArray {
			return reject("bad_field", `"batch" is %s, not an array`, typeName(batch))
		}
		env := envelope{
			context:      obj.Get("context"),
			sentAt:       obj.Get("sentAt"),
			integrations: obj.Get("integrations"),
			writeKey:     obj.Get("writeKey"),
		}
		msgs, _ := batch.Array()
		if len(msgs) == 0 {
			return reject("missing_field", `"batch" is empty`)
		}
		for i, m := range msgs {
			if err := d.message(st, rec, out, m, &env, i); err != nil {
				out.Rejected = append(out.Rejected, Rejected{
					Pos: out.Pos, Timestamp: rec.Timestamp, Raw: m.MarshalTo(nil),
					Reason: fmt.Sprintf("batch message %d: %s", i, err), Code: rejectCode(err),
				})
			}
		}
		return out
	}
	if err := d.message(st, rec, out, v, nil, -1); err != nil {
		return reject(rejectCode(err), "%s", err)
	}
	return out
}

// envelope is what a batch envelope lends its messages.
type envelope struct {
	context, sentAt, integrations, writeKey *fastjson.Value
}

func typeName(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeNull:
		return "null"
	case fastjson.TypeObject:
		return "an object"
	case fastjson.TypeArray:
		return "an array"
	case fastjson.TypeString:
		return "a string"
	case fastjson.TypeNumber:
		return "a number"
	}
	return "a boolean"
}

var callTypes = map[string]string{
	"track": "track", "identify": "identify", "page": "page",
	"screen": "screen", "group": "group", "alias": "alias",
}

// msgCtx carries one message's decoding state.
type msgCtx struct {
	st       *state
	d        *Decoder
	out      *Decoded
	schema   string
	id       string
	received time.Time
}

// message decodes one Segment message into out. An error rejects it.
func (d *Decoder) message(st *state, rec *Record, out *Decoded, v *fastjson.Value, env *envelope, index int) error {
	if v.Type() != fastjson.TypeObject {
		return rejectf("not_object", "not a JSON object: the value is %s", typeName(v))
	}
	// Number tokens fastjson lets through but JSON forbids (NaN, 1.2.3) are
	// caught where values are converted (jsonValue, scalarText): walking
	// the whole tree up front cost 12% of decoding.
	st.badNumber = ""
	rowsBefore, discardsBefore := len(out.Rows), len(out.Discards)
	obj, _ := v.Object()
	get := func(k string) *fastjson.Value {
		x := obj.Get(k)
		if x != nil && x.Type() == fastjson.TypeNull {
			return nil
		}
		return x
	}
	tv := get("type")
	if tv == nil {
		return rejectf("missing_field", `missing "type"`)
	}
	if tv.Type() != fastjson.TypeString {
		return rejectf("bad_field", `"type" is %s, not a string`, typeName(tv))
	}
	typ, ok := callTypes[strings.ToLower(string(tv.GetStringBytes()))]
	if !ok {
		return rejectf("unknown_type", "unknown type %q (want track, identify, page, screen, group or alias)", clip(sanitize(tv.GetStringBytes()), 64))
	}

	// Routing (SPEC §1): integrations.Warehouses.
	integ := get("integrations")
	if integ == nil && env != nil {
		integ = env.integrations
	}
	if !d.routed(integ) {
		out.Skipped++
		return nil
	}

	userID, err := st.idField(get("userId"), "userId")
	if err != nil {
		return err
	}
	anonID, err := st.idField(get("anonymousId"), "anonymousId")
	if err != nil {
		return err
	}
	var event, groupID, previousID string
	switch typ {
	case "track":
		ev := get("event")
		if ev == nil {
			return rejectf("missing_field", `track without "event"`)
		}
		if ev.Type() != fastjson.TypeString {
			return rejectf("bad_field", `"event" is %s, not a string`, typeName(ev))
		}
		event = st.arena.str(ev.GetStringBytes())
		if event == "" {
			return rejectf("missing_field", `track with an empty "event"`)
		}
		if st.eventNames(event).table == "" {
			return rejectf("unnameable", "event name %q has no ASCII letters or digits, so it cannot name a table", clip(event, 64))
		}
	case "group":
		if groupID, err = st.idField(get("groupId"), "groupId"); err != nil {
			return err
		}
		if groupID == "" {
			return rejectf("missing_field", `group without "groupId"`)
		}
	case "alias":
		if previousID, err = st.idField(get("previousId"), "previousId"); err != nil {
			return err
		}
		if userID == "" || previousID == "" {
			return rejectf("missing_field", `alias needs both "userId" and "previousId"`)
		}
	}
	if typ != "alias" && userID == "" && anonID == "" {
		return rejectf("missing_field", `%s without "userId" or "anonymousId"`, typ)
	}

	// Source → schema (SPEC §2).
	schemaName, err := d.schemaFor(rec, get("writeKey"), env)
	if err != nil {
		return err
	}

	// Message id (SPEC §11).
	id, err := st.idField(get("messageId"), "messageId")
	if err != nil {
		return err
	}
	if id == "" {
		id = fallbackID(rec, index)
	}

	mc := &msgCtx{st: st, d: d, out: out, schema: schemaName, id: id}
	mainTable := tableFor[typ]

	// Timestamps (SPEC §10).
	received, hasReceived := mc.timeField(get("receivedAt"), mainTable, "received_at")
	if !hasReceived {
		received = rec.Timestamp
	}
	mc.received = received
	ts, hasTS := mc.timeField(get("timestamp"), mainTable, "timestamp")
	orig, hasOrig := mc.timeField(get("originalTimestamp"), mainTable, "original_timestamp")
	if !hasOrig && hasTS {
		orig, hasOrig = ts, true
	}
	sentV := get("sentAt")
	if sentV == nil && env != nil && env.sentAt != nil && env.sentAt.Type() != fastjson.TypeNull {
		sentV = env.sentAt
	}
	sent, hasSent := mc.timeField(sentV, mainTable, "sent_at")
	var timestamp time.Time
	switch {
	case hasReceived && hasTS:
		timestamp = ts
	case hasSent && hasOrig:
		timestamp = received.Add(-sent.Sub(orig))
	case hasOrig:
		timestamp = orig
	default:
		timestamp = received
	}

	// One column slice per call: the standard columns, the call's fixed
	// columns, context, then properties or traits. A track's tracks row is
	// a prefix of its event-table row, sharing the memory.
	cols := make([]Col, 0, 48)
	cols = append(cols, Col{"id", strVal(id)}, Col{"received_at", timeVal(received)})
	if anonID != "" {
		cols = append(cols, Col{"anonymous_id", strVal(anonID)})
	}
	if userID != "" {
		cols = append(cols, Col{"user_id", strVal(userID)})
	}
	if hasOrig {
		cols = append(cols, Col{"original_timestamp", timeVal(orig)})
	}
	if hasSent {
		cols = append(cols, Col{"sent_at", timeVal(sent)})
	}
	cols = append(cols, Col{"timestamp", timeVal(timestamp)})

	if len(out.Rows) == 0 {
		out.Rows = make([]TableRow, 0, 2)
	}
	pos := out.Pos
	emit := func(table string, merge bool, key string, rowCols []Col) {
		rowID := id
		if merge {
			rowID = rowCols[0].Val.Str
		}
		out.Rows = append(out.Rows, TableRow{Table: TableRef{Schema: schemaName, Table: table}, Merge: merge, Row: Row{
			ID: rowID, ReceivedAt: received, Cols: rowCols, Pos: pos, Key: key,
		}})
	}
	// merged builds a users/accounts row: head, then the call's context and
	// traits (cols[from:]).
	merged := func(head []Col, from int) []Col {
		row := make([]Col, 0, len(head)+len(cols)-from)
		row = append(row, head...)
		return append(row, cols[from:]...)
	}

	ctxV := get("context")
	switch typ {
	case "track":
		en := st.eventNames(event)
		cols = append(cols, Col{"event", strVal(en.name)}, Col{"event_text", strVal(event)})
		table := en.table
		cols = mc.contextCols(cols, ctxV, env, "tracks")
		n := len(cols)
		cols = mc.sectionCols(cols, get("properties"), table, nil)
		emit("tracks", false, "", cols[:n:n])
		emit(table, false, "", cols)
	case "identify":
		ctxAt := len(cols)
		cols = mc.contextCols(cols, ctxV, env, "identifies")
		cols = mc.sectionCols(cols, get("traits"), "identifies", nil)
		emit("identifies", false, "", cols)
		if userID != "" {
			head := []Col{{"id", strVal(userID)}, {"received_at", timeVal(received)}}
			emit("users", true, MergeKey(received, id), merged(head, ctxAt))
		}
	case "page", "screen":
		table := mainTable
		topAt := len(cols)
		if n := get("name"); n != nil {
			if val, ok := st.jsonValue(n); ok {
				cols = append(cols, Col{"name", val})
			}
		}
		if c := get("category"); c != nil {
			if val, ok := st.jsonValue(c); ok {
				cols = append(cols, Col{"category", val})
			}
		}
		top := cols[topAt:len(cols):len(cols)]
		cols = mc.contextCols(cols, ctxV, env, table)
		cols = mc.sectionCols(cols, get("properties"), table, top)
		emit(table, false, "", cols)
	case "group":
		cols = append(cols, Col{"group_id", strVal(groupID)})
		ctxAt := len(cols)
		cols = mc.contextCols(cols, ctxV, env, "groups")
		cols = mc.sectionCols(cols, get("traits"), "groups", nil)
		emit("groups", false, "", cols)
		head := []Col{{"id", strVal(groupID)}, {"received_at", timeVal(received)}}
		if userID != "" {
			head = append(head, Col{"user_id", strVal(userID)})
		}
		emit("accounts", true, MergeKey(received, id), merged(head, ctxAt))
	case "alias":
		cols = append(cols, Col{"previous_id", strVal(previousID)})
		cols = mc.contextCols(cols, ctxV, env, "aliases")
		emit("aliases", false, "", cols)
	}
	if st.badNumber != "" {
		out.Rows, out.Discards = out.Rows[:rowsBefore], out.Discards[:discardsBefore]
		return rejectf("invalid_json", "invalid JSON: %q is not a number", st.badNumber)
	}
	out.Messages++
	return nil
}

var tableFor = map[string]string{
	"track": "tracks", "identify": "identifies", "page": "pages",
	"screen": "screens", "group": "groups", "alias": "aliases",
}

// routed applies integrations.Warehouses (SPEC §1). integrations.All:false
// does not stop a warehouse load.
func (d *Decoder) routed(integ *fastjson.Value) bool {
	if integ == nil || integ.Type() != fastjson.TypeObject {
		return true
	}
	wh := integ.Get("Warehouses")
	if wh == nil {
		wh = integ.Get("warehouses")
	}
	if wh == nil {
		return true
	}
	switch wh.Type() {
	case fastjson.TypeFalse:
		return false
	case fastjson.TypeObject:
	default:
		return true
	}
	if all := wh.Get("all"); all != nil && all.Type() == fastjson.TypeFalse {
		return false
	}
	if ids := wh.Get("warehouseIds"); ids != nil && ids.Type() == fastjson.TypeArray {
		arr, _ := ids.Array()
		for _, x := range arr {
			if d.cfg.WarehouseID != "" && x.Type() == fastjson.TypeString && string(x.GetStringBytes()) == d.cfg.WarehouseID {
				return true
			}
		}
		return false
	}
	return true
}

// schemaFor resolves the record's source (SPEC §2): the header, the
// writeKey map, the topic map, else the topic.
func (d *Decoder) schemaFor(rec *Record, writeKey *fastjson.Value, env *envelope) (string, error) {
	src, from := rec.SourceHeader, "header "+d.cfg.SourceHeader
	if src == "" && len(d.cfg.WriteKeys) > 0 {
		if writeKey == nil && env != nil {
			writeKey = env.writeKey
		}
		if writeKey != nil && writeKey.Type() == fastjson.TypeString {
			if s, ok := d.cfg.WriteKeys[string(writeKey.GetStringBytes())]; ok {
				src, from = s, "SEGWH_WRITE_KEYS"
			}
		}
	}
	if src == "" {
		if s, ok := d.cfg.TopicSources[rec.Topic]; ok {
			src, from = s, "SEGWH_TOPIC_SOURCES"
		}
	}
	if src == "" {
		src, from = rec.Topic, "the topic name"
	}
	name := SchemaName(src)
	if name == "" {
		return "", rejectf("unnameable", "source %q (from %s) has no ASCII letters or digits, so it cannot name a schema", clip(sanitize([]byte(src)), 64), from)
	}
	return name, nil
}

// fallbackID is the deterministic id of a message without messageId, so a
// replay from Kafka stays idempotent.
func fallbackID(rec *Record, index int) string {
	b := make([]byte, 0, len(rec.Topic)+32)
	b = append(b, "kafka:"...)
	b = append(b, rec.Topic...)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(rec.Partition), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, rec.Offset, 10)
	if index >= 0 {
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(index), 10)
	}
	return sanitize(b)
}

// idField reads an identifier field: a string, or a number or boolean
// written as text (Segment accepts numeric user ids).
func (st *state) idField(v *fastjson.Value, name string) (string, error) {
	if v == nil {
		return "", nil
	}
	s, err := st.scalarText(v)
	if err != nil {
		return "", rejectf("bad_field", "%q is %s, not a string", name, typeName(v))
	}
	return s, nil
}

func (st *state) scalarText(v *fastjson.Value) (string, error) {
	switch v.Type() {
	case fastjson.TypeString:
		return st.arena.str(v.GetStringBytes()), nil
	case fastjson.TypeNumber:
		st.num = v.MarshalTo(st.num[:0])
		if !isNumberBytes(st.num) {
			return "", rejectf("invalid_json", "invalid JSON: %q is not a number", clip(string(st.num), 32))
		}
		return st.arena.str(st.num), nil
	case fastjson.TypeTrue:
		return "true", nil
	case fastjson.TypeFalse:
		return "false", nil
	case fastjson.TypeNull:
		return "", nil
	}
	return "", errors.New("not a scalar")
}

// timeField reads a standard timestamp field. A value that is not an RFC
// 3339 date-time is kept as a discard and treated as absent.
func (mc *msgCtx) timeField(v *fastjson.Value, table, column string) (time.Time, bool) {
	if v == nil {
		return time.Time{}, false
	}
	if v.Type() == fastjson.TypeString {
		if t, ok := ParseTimestamp(string(v.GetStringBytes())); ok {
			if inPostgresRange(t) {
				return t, true
			}
			mc.discard(table, column, sanitize(v.GetStringBytes()), "bad_timestamp", "timestamp outside the range Postgres can store")
			return time.Time{}, false
		}
	}
	text, err := mc.st.scalarText(v)
	if err != nil {
		text = sanitize(v.MarshalTo(nil))
	}
	mc.discard(table, column, text, "bad_timestamp", "not an RFC 3339 date-time with a zone")
	return time.Time{}, false
}

func inPostgresRange(t time.Time) bool {
	y := t.UTC().Year()
	return y >= -4712 && y <= 294275
}

func (mc *msgCtx) discard(table, column, value, code, reason string) {
	mc.out.Discards = append(mc.out.Discards, Discard{
		Schema: mc.schema, Table: table, RowID: mc.id, Column: column,
		Value: value, Reason: reason, Code: code, ReceivedAt: mc.received,
	})
}

func strVal(s string) Value     { return Value{Kind: KindString, Str: s} }
func timeVal(t time.Time) Value { return TimeValue(t, "") }
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// jsonValue converts a JSON leaf (anything but an object) to a Value.
// ok is false for null.
func (st *state) jsonValue(v *fastjson.Value) (Value, bool) {
	switch v.Type() {
	case fastjson.TypeString:
		s := st.arena.str(v.GetStringBytes())
		if t, ok := ParseTimestamp(s); ok && inPostgresRange(t) {
			return TimeValue(t, s), true
		}
		return Value{Kind: KindString, Str: s}, true
	case fastjson.TypeNumber:
		st.num = v.MarshalTo(st.num[:0])
		if i, ok := parseIntBytes(st.num); ok {
			return Value{Kind: KindInt, Int: i}, true
		}
		if !isNumberBytes(st.num) {
			st.badNumber = clip(string(st.num), 32)
			return Value{}, false
		}
		return Value{Kind: KindNumber, Str: st.arena.str(st.num)}, true
	case fastjson.TypeTrue:
		return BoolValue(true), true
	case fastjson.TypeFalse:
		return BoolValue(false), true
	case fastjson.TypeArray:
		if err := st.checkNumbers(v); err != nil {
			st.badNumber = err.Error()
			return Value{}, false
		}
		st.num = v.MarshalTo(st.num[:0])
		return Value{Kind: KindArray, Str: st.arena.str(st.num)}, true
	case fastjson.TypeObject:
		st.num = v.MarshalTo(st.num[:0])
		return Value{Kind: KindString, Str: st.arena.str(st.num)}, true
	}
	return Value{}, false
}

// parseIntBytes parses a JSON integer literal (no fraction, no exponent)
// that fits int64.
func parseIntBytes(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// isNumberBytes is IsNumberLiteral without the conversion to string.
func isNumberBytes(b []byte) bool { return IsNumberLiteral(unsafe.String(unsafe.SliceData(b), len(b))) }

// checkNumbers rejects number tokens that fastjson lets through but JSON
// forbids (NaN, Inf, 1.2.3).
func (st *state) checkNumbers(v *fastjson.Value) error {
	switch v.Type() {
	case fastjson.TypeNumber:
		st.num = v.MarshalTo(st.num[:0])
		lit := st.num
		if !isNumberBytes(lit) {
			return rejectf("invalid_json", "invalid JSON: %q is not a number", clip(string(lit), 32))
		}
	case fastjson.TypeArray:
		arr, _ := v.Array()
		for _, x := range arr {
			if err := st.checkNumbers(x); err != nil {
				return err
			}
		}
	case fastjson.TypeObject:
		o, _ := v.Object()
		var err error
		o.Visit(func(_ []byte, x *fastjson.Value) {
			if err == nil {
				err = st.checkNumbers(x)
			}
		})
		return err
	}
	return nil
}

// sanitize makes text storable in Postgres: NUL removed, invalid UTF-8
// replaced with U+FFFD (SPEC §7).
func sanitize(b []byte) string {
	clean := true
	for _, c := range b {
		if c == 0 || c >= utf8.RuneSelf {
			clean = false
			break
		}
	}
	if clean {
		return string(b)
	}
	if bytes.IndexByte(b, 0) >= 0 {
		b = bytes.ReplaceAll(b, []byte{0}, nil)
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func sanitizeReason(s string) string { return sanitize([]byte(clip(s, 200))) }

// arena holds the text of one record's values: one allocation per record
// instead of one per string. Strings handed out point into it and stay
// valid for as long as any of them is referenced; the arena never writes
// over bytes it has handed out.
type arena struct {
	buf []byte
}

// str returns b as a sanitized string (NUL removed, invalid UTF-8
// replaced), copied into the arena.
func (a *arena) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	for _, c := range b {
		if c == 0 || c >= utf8.RuneSelf {
			return sanitize(b) // rare: let the slow path allocate
		}
	}
	if cap(a.buf)-len(a.buf) < len(b) {
		n := 2 * len(b)
		if n < 4096 {
			n = 4096
		}
		a.buf = make([]byte, 0, n)
	}
	start := len(a.buf)
	a.buf = append(a.buf, b...)
	return unsafe.String(&a.buf[start], len(b))
}

// rejectError is why a message is rejected, with its reason class (the
// label of the rejected-records metric).
type rejectError struct {
	code, msg string
}

func (e *rejectError) Error() string { return e.msg }

func rejectf(code, format string, args ...any) error {
	return &rejectError{code: code, msg: fmt.Sprintf(format, args...)}
}

func rejectCode(err error) string {
	var re *rejectError
	if errors.As(err, &re) {
		return re.code
	}
	return "invalid_message"
}
