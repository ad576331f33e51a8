package schema

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// Decoder turns Kafka record values into warehouse rows (SPEC §1–§11). It
// is safe for concurrent use.
//
// JSON is read straight from the record's bytes (json.go), with no tree of
// values: number literals stay exact (a numeric column gets the digits that
// were sent) and array columns get the array's text.
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
// messages comes back as a rejection with a reason. What it returns does
// not share memory with rec.Value, which the caller may reuse.
func (d *Decoder) Decode(rec *Record) *Decoded {
	// The Decoded and its first two rows are one allocation: a message
	// makes one or two rows.
	da := &decodedAlloc{}
	out := &da.d
	out.Pos, out.Bytes = rec.Pos(), len(rec.Value)
	reject := func(code, format string, args ...any) *Decoded {
		out.Rows, out.Discards, out.ends = nil, nil, nil
		out.Rejected = append(out.Rejected[:0], Rejected{
			Pos: out.Pos, Timestamp: rec.Timestamp, Raw: bytes.Clone(rec.Value), Reason: fmt.Sprintf(format, args...), Code: code,
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
	defer st.release()
	var mf msgFields
	v, err := st.scanRecord(unsafe.String(unsafe.SliceData(rec.Value), len(rec.Value)), &mf)
	if err != nil {
		return reject("invalid_json", "invalid JSON: %s", sanitizeReason(err.Error()))
	}
	if v.k != jObject {
		return reject("not_object", "not a JSON object: the value is %s", typeName(v))
	}
	if batch := mf.vals[fBatch]; batch.k != jAbsent {
		if batch.k != jArray {
			return reject("bad_field", `"batch" is %s, not an array`, typeName(batch))
		}
		env := envelope{
			context:      mf.vals[fContext],
			sentAt:       mf.vals[fSentAt],
			integrations: mf.vals[fIntegrations],
			writeKey:     mf.vals[fWriteKey],
		}
		if batch.empty() {
			return reject("missing_field", `"batch" is empty`)
		}
		c := st.cursor(batch)
		for i := 0; c.more(); i++ {
			m := c.value()
			var bf msgFields
			if m.k == jObject {
				bf.read(st, m)
			}
			err := d.message(st, rec, da, m, &bf, &env, i)
			out.ends = append(out.ends, msgEnd{rows: len(out.Rows), discards: len(out.Discards)})
			if err != nil {
				raw := m.s
				if m.k == jString {
					raw = `"` + raw + `"`
				}
				out.Rejected = append(out.Rejected, Rejected{
					Pos: out.Pos, Timestamp: rec.Timestamp, Raw: []byte(raw),
					Reason: fmt.Sprintf("batch message %d: %s", i, err), Code: rejectCode(err),
				})
			}
		}
		return out
	}
	if err := d.message(st, rec, da, v, &mf, nil, -1); err != nil {
		return reject(rejectCode(err), "%s", err)
	}
	return out
}

// decodedAlloc is a Decoded with room for its first rows.
type decodedAlloc struct {
	d    Decoded
	rows [2]TableRow
}

// The top-level fields of a message that the decoder reads.
const (
	fType = iota
	fIntegrations
	fUserID
	fAnonymousID
	fEvent
	fGroupID
	fPreviousID
	fWriteKey
	fMessageID
	fReceivedAt
	fTimestamp
	fOriginalTimestamp
	fSentAt
	fContext
	fProperties
	fTraits
	fName
	fCategory
	fBatch // only at the top level of a record
	nFields
)

// msgFields holds a message's top-level fields, read in one pass over its
// keys: the first of duplicate keys wins (keys compared unescaped).
type msgFields struct {
	vals [nFields]jv
}

// set records v as the field named k unless it has one already.
func (m *msgFields) set(k []byte, v jv) {
	if i := fieldIndex(k); i >= 0 && m.vals[i].k == jAbsent {
		m.vals[i] = v
	}
}

// read records the fields of o, an object of validated text.
func (m *msgFields) read(st *state, o jv) {
	for c := st.cursor(o); c.more(); {
		k, kesc := c.key()
		m.set(st.key(k, kesc), c.value())
	}
}

func fieldIndex(k []byte) int {
	switch string(k) {
	case "type":
		return fType
	case "integrations":
		return fIntegrations
	case "userId":
		return fUserID
	case "anonymousId":
		return fAnonymousID
	case "event":
		return fEvent
	case "groupId":
		return fGroupID
	case "previousId":
		return fPreviousID
	case "writeKey":
		return fWriteKey
	case "messageId":
		return fMessageID
	case "receivedAt":
		return fReceivedAt
	case "timestamp":
		return fTimestamp
	case "originalTimestamp":
		return fOriginalTimestamp
	case "sentAt":
		return fSentAt
	case "context":
		return fContext
	case "properties":
		return fProperties
	case "traits":
		return fTraits
	case "name":
		return fName
	case "category":
		return fCategory
	case "batch":
		return fBatch
	}
	return -1
}

// get returns field i, absent when null.
func (m *msgFields) get(i int) jv {
	if x := m.vals[i]; x.k != jNull {
		return x
	}
	return jv{}
}

// envelope is what a batch envelope lends its messages.
type envelope struct {
	context, sentAt, integrations, writeKey jv
}

func typeName(v jv) string {
	switch v.k {
	case jNull:
		return "null"
	case jObject:
		return "an object"
	case jArray:
		return "an array"
	case jString:
		return "a string"
	case jNumber:
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
func (d *Decoder) message(st *state, rec *Record, da *decodedAlloc, v jv, mf *msgFields, env *envelope, index int) error {
	if v.k != jObject {
		return rejectf("not_object", "not a JSON object: the value is %s", typeName(v))
	}
	out := &da.d
	rowsBefore := len(out.Rows)
	tv := mf.get(fType)
	if tv.k == jAbsent {
		return rejectf("missing_field", `missing "type"`)
	}
	if tv.k != jString {
		return rejectf("bad_field", `"type" is %s, not a string`, typeName(tv))
	}
	typ, ok := callTypes[strings.ToLower(string(st.text(tv)))]
	if !ok {
		return rejectf("unknown_type", "unknown type %q (want track, identify, page, screen, group or alias)", clip(sanitize(st.text(tv)), 64))
	}

	// Routing (SPEC §1): integrations.Warehouses.
	integ := mf.get(fIntegrations)
	if integ.k == jAbsent && env != nil {
		integ = env.integrations
	}
	if !d.routed(st, integ) {
		out.Skipped++
		return nil
	}

	userID, err := st.idField(mf.get(fUserID), "userId")
	if err != nil {
		return err
	}
	anonID, err := st.idField(mf.get(fAnonymousID), "anonymousId")
	if err != nil {
		return err
	}
	var event, groupID, previousID string
	switch typ {
	case "track":
		ev := mf.get(fEvent)
		if ev.k == jAbsent {
			return rejectf("missing_field", `track without "event"`)
		}
		if ev.k != jString {
			return rejectf("bad_field", `"event" is %s, not a string`, typeName(ev))
		}
		event = st.arena.str(st.text(ev))
		if event == "" {
			return rejectf("missing_field", `track with an empty "event"`)
		}
		if st.eventNames(event).table == "" {
			return rejectf("unnameable", "event name %q has no ASCII letters or digits, so it cannot name a table", clip(event, 64))
		}
	case "group":
		if groupID, err = st.idField(mf.get(fGroupID), "groupId"); err != nil {
			return err
		}
		if groupID == "" {
			return rejectf("missing_field", `group without "groupId"`)
		}
	case "alias":
		if previousID, err = st.idField(mf.get(fPreviousID), "previousId"); err != nil {
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
	schemaName, err := d.schemaFor(st, rec, mf.get(fWriteKey), env)
	if err != nil {
		return err
	}

	// Message id (SPEC §11).
	id, err := st.idField(mf.get(fMessageID), "messageId")
	if err != nil {
		return err
	}
	if id == "" {
		id = fallbackID(rec, index)
	}

	// The message context lives in the pooled state: the flattener's
	// recursion would otherwise make it escape, an allocation per message.
	mc := &st.mc
	*mc = msgCtx{st: st, d: d, out: out, schema: schemaName, id: id}
	mainTable := tableFor[typ]

	// Timestamps (SPEC §10).
	received, hasReceived := mc.timeField(mf.get(fReceivedAt), mainTable, "received_at")
	if !hasReceived {
		received = rec.Timestamp
	}
	mc.received = received
	ts, hasTS := mc.timeField(mf.get(fTimestamp), mainTable, "timestamp")
	orig, hasOrig := mc.timeField(mf.get(fOriginalTimestamp), mainTable, "original_timestamp")
	if !hasOrig && hasTS {
		orig, hasOrig = ts, true
	}
	sentV := mf.get(fSentAt)
	if sentV.k == jAbsent && env != nil && env.sentAt.k != jNull {
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
	cols := append(st.slabTail(), Col{"id", strVal(id)}, Col{"received_at", timeVal(received)})
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
		out.Rows = da.rows[:0:2]
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

	ctxV := mf.get(fContext)
	switch typ {
	case "track":
		en := st.eventNames(event)
		cols = append(cols, Col{"event", strVal(en.name)}, Col{"event_text", strVal(event)})
		table := en.table
		cols = mc.contextCols(cols, ctxV, env, "tracks")
		n := len(cols)
		cols = mc.sectionCols(cols, mf.get(fProperties), table, nil)
		emit("tracks", false, "", cols[:n:n])
		emit(table, false, "", cols)
	case "identify":
		ctxAt := len(cols)
		cols = mc.contextCols(cols, ctxV, env, "identifies")
		cols = mc.sectionCols(cols, mf.get(fTraits), "identifies", nil)
		emit("identifies", false, "", cols)
		if userID != "" {
			head := []Col{{"id", strVal(userID)}, {"received_at", timeVal(received)}}
			emit("users", true, MergeKey(received, id), merged(head, ctxAt))
		}
	case "page", "screen":
		table := mainTable
		topAt := len(cols)
		if n := mf.get(fName); n.k != jAbsent {
			if val, ok := st.jsonValue(n); ok {
				cols = append(cols, Col{"name", val})
			}
		}
		if c := mf.get(fCategory); c.k != jAbsent {
			if val, ok := st.jsonValue(c); ok {
				cols = append(cols, Col{"category", val})
			}
		}
		top := cols[topAt:len(cols):len(cols)]
		cols = mc.contextCols(cols, ctxV, env, table)
		cols = mc.sectionCols(cols, mf.get(fProperties), table, top)
		emit(table, false, "", cols)
	case "group":
		cols = append(cols, Col{"group_id", strVal(groupID)})
		ctxAt := len(cols)
		cols = mc.contextCols(cols, ctxV, env, "groups")
		cols = mc.sectionCols(cols, mf.get(fTraits), "groups", nil)
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
	st.claim(cols)
	for i := rowsBefore; i < len(out.Rows); i++ {
		// No append to a row may write into the slab past it.
		rc := &out.Rows[i].Row.Cols
		*rc = (*rc)[:len(*rc):len(*rc)]
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
func (d *Decoder) routed(st *state, integ jv) bool {
	if integ.k != jObject {
		return true
	}
	wh := st.get(integ, "Warehouses")
	if wh.k == jAbsent {
		wh = st.get(integ, "warehouses")
	}
	switch wh.k {
	case jFalse:
		return false
	case jObject:
	default:
		return true
	}
	if all := st.get(wh, "all"); all.k == jFalse {
		return false
	}
	if ids := st.get(wh, "warehouseIds"); ids.k == jArray {
		for c := st.cursor(ids); c.more(); {
			if x := c.value(); d.cfg.WarehouseID != "" && x.k == jString && string(st.text(x)) == d.cfg.WarehouseID {
				return true
			}
		}
		return false
	}
	return true
}

// schemaFor resolves the record's source (SPEC §2): the header, the
// writeKey map, the topic map, else the topic.
func (d *Decoder) schemaFor(st *state, rec *Record, writeKey jv, env *envelope) (string, error) {
	src, from := rec.SourceHeader, fromHeader
	if src == "" && len(d.cfg.WriteKeys) > 0 {
		if writeKey.k == jAbsent && env != nil {
			writeKey = env.writeKey
		}
		if writeKey.k == jString {
			if s, ok := d.cfg.WriteKeys[string(st.text(writeKey))]; ok {
				src, from = s, fromWriteKeys
			}
		}
	}
	if src == "" {
		if s, ok := d.cfg.TopicSources[rec.Topic]; ok {
			src, from = s, fromTopicSources
		}
	}
	if src == "" {
		src, from = rec.Topic, fromTopic
	}
	// Sources repeat record after record: remember the last one's name.
	if src == st.lastSource && st.lastSchema != "" {
		return st.lastSchema, nil
	}
	name := SchemaName(src)
	if name == "" {
		where := [...]string{fromHeader: "header " + d.cfg.SourceHeader, fromWriteKeys: "SEGWH_WRITE_KEYS",
			fromTopicSources: "SEGWH_TOPIC_SOURCES", fromTopic: "the topic name"}[from]
		return "", rejectf("unnameable", "source %q (from %s) has no ASCII letters or digits, so it cannot name a schema", clip(sanitize([]byte(src)), 64), where)
	}
	st.lastSource, st.lastSchema = src, name
	return name, nil
}

// Where a record's source came from, for schemaFor's rejection reason.
const (
	fromHeader = iota
	fromWriteKeys
	fromTopicSources
	fromTopic
)

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
func (st *state) idField(v jv, name string) (string, error) {
	if v.k == jAbsent {
		return "", nil
	}
	s, err := st.scalarText(v)
	if err != nil {
		return "", rejectf("bad_field", "%q is %s, not a string", name, typeName(v))
	}
	return s, nil
}

func (st *state) scalarText(v jv) (string, error) {
	switch v.k {
	case jString:
		return st.arena.str(st.text(v)), nil
	case jNumber:
		return st.arena.copy(bytesOf(v.s)), nil // a number literal is ASCII
	case jTrue:
		return "true", nil
	case jFalse:
		return "false", nil
	case jNull:
		return "", nil
	}
	return "", errors.New("not a scalar")
}

// timeField reads a standard timestamp field. A value that is not an RFC
// 3339 date-time is kept as a discard and treated as absent.
func (mc *msgCtx) timeField(v jv, table, column string) (time.Time, bool) {
	if v.k == jAbsent {
		return time.Time{}, false
	}
	if v.k == jString {
		if t, ok := ParseTimestamp(string(mc.st.text(v))); ok {
			if inPostgresRange(t) {
				return t, true
			}
			mc.discard(table, column, sanitize(mc.st.text(v)), "bad_timestamp", "timestamp outside the range Postgres can store")
			return time.Time{}, false
		}
	}
	text, err := mc.st.scalarText(v)
	if err != nil {
		text = mc.st.marshalText(v)
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
func (st *state) jsonValue(v jv) (Value, bool) {
	switch v.k {
	case jString:
		s := st.arena.str(st.text(v))
		if t, ok := ParseTimestamp(s); ok && inPostgresRange(t) {
			return TimeValue(t, s), true
		}
		return Value{Kind: KindString, Str: s}, true
	case jNumber:
		if i, ok := parseInt(v.s); ok {
			return Value{Kind: KindInt, Int: i}, true
		}
		return Value{Kind: KindNumber, Str: st.arena.copy(bytesOf(v.s))}, true
	case jTrue:
		return BoolValue(true), true
	case jFalse:
		return BoolValue(false), true
	case jArray:
		// The array's text with every string quoted the one way, so equal
		// arrays store equal text.
		st.num = st.compact(st.num[:0], v.s, true)
		return Value{Kind: KindArray, Str: st.arena.str(st.num)}, true
	case jObject:
		st.num = st.compact(st.num[:0], v.s, false)
		return Value{Kind: KindString, Str: st.arena.str(st.num)}, true
	}
	return Value{}, false
}

// marshalText is v as text for a discard: a string unescaped and quoted
// again, anything else compacted as it was sent.
func (st *state) marshalText(v jv) string {
	if v.k == jString {
		return sanitize(quoteText(nil, st.text(v)))
	}
	b := st.compact(nil, v.s, false)
	return sanitize(b)
}

// parseInt parses a JSON integer literal (no fraction, no exponent) that
// fits int64.
func parseInt(b string) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 19 || (b[0] == '0' && len(b) > 1) {
		return 0, false // "01" is not JSON, and the scan refused it
	}
	var u uint64
	for i := 0; i < len(b); i++ {
		c := b[i]
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

// arenaChunk is the size of an arena's buffers: the text of a few dozen
// typical messages.
const arenaChunk = 32 << 10

// str returns b as a sanitized string (NUL removed, invalid UTF-8
// replaced), copied into the arena. The bytes behind a returned string are
// never written again: a full buffer is left to the strings in it and a
// new one started.
//
// The copy and the check that b is plain ASCII without a NUL are one pass,
// eight bytes at a time (the last word overlapping the one before it); a
// string that is not plain is left to sanitize, which allocates, and the
// arena does not keep the bytes it copied.
func (a *arena) str(b []byte) string {
	n := len(b)
	if n == 0 {
		return ""
	}
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, max(arenaChunk, n))
	}
	start := len(a.buf)
	dst := a.buf[start : start+n]
	// A byte with its top bit set, or a zero byte (which borrows through
	// x-lo into its top bit when no top bit is set), sets its top bit in bad.
	const lo, hi = swarLo, swarHi
	var bad uint64
	switch {
	case n >= 8:
		for i := 0; i+8 <= n; i += 8 {
			x := binary.LittleEndian.Uint64(b[i:])
			bad |= (x - lo) | x
			binary.LittleEndian.PutUint64(dst[i:], x)
		}
		if n%8 != 0 {
			x := binary.LittleEndian.Uint64(b[n-8:])
			bad |= (x - lo) | x
			binary.LittleEndian.PutUint64(dst[n-8:], x)
		}
	case n >= 4:
		const lo32, hi32 = lo & 0xffffffff, hi & 0xffffffff
		x, y := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[n-4:])
		bad = uint64((x-lo32)|x|(y-lo32)|y) & hi32
		binary.LittleEndian.PutUint32(dst, x)
		binary.LittleEndian.PutUint32(dst[n-4:], y)
	default:
		for i, c := range b {
			if c == 0 || c >= utf8.RuneSelf {
				bad = hi
			}
			dst[i] = c
		}
	}
	if bad&hi != 0 {
		return sanitize(b) // rare: let the slow path allocate
	}
	a.buf = a.buf[:start+n]
	return unsafe.String(&dst[0], n)
}

// copy returns b, which must be plain already, copied into the arena.
func (a *arena) copy(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if cap(a.buf)-len(a.buf) < len(b) {
		a.buf = make([]byte, 0, max(arenaChunk, len(b)))
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
