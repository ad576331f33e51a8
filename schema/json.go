package schema

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf16"
	"unsafe"
)

// The decoder reads JSON straight from the record's bytes, with no tree of
// values: one validating pass over the record (scanRecord) that also picks
// out a message's top-level fields, then the flattener walks context,
// properties and traits in the text itself. The grammar is JSON's (RFC
// 8259): a record with a number that is not JSON (01, 1.2.3, NaN), a
// string with an escape JSON does not have (\q) or a raw control
// character is rejected whole, wherever it is, read or not (SPEC §9; the
// decoder used to take valyala/fastjson's looser grammar). Nesting stops
// at maxJSONDepth.

// jkind is the kind of a JSON value.
type jkind uint8

const (
	jAbsent jkind = iota // no such field
	jNull
	jTrue
	jFalse
	jNumber
	jString
	jArray
	jObject
)

// jv is one JSON value of a record as a view of its text: a string's text
// between the quotes, still escaped (esc says whether it holds a
// backslash), a number's literal, an array's or an object's text with its
// brackets. The zero jv is an absent field.
type jv struct {
	s   string
	k   jkind
	esc bool
	t   int32 // an object's or array's first string on the tape
}

// maxJSONDepth is how deep values may nest (fastjson's MaxDepth).
const maxJSONDepth = 300

// jsonError is a syntax error at a byte offset of the record.
type jsonError struct {
	what string
	at   int
	s    string
}

func (e *jsonError) Error() string {
	tail := e.s[min(e.at, len(e.s)):]
	if tail == "" {
		return fmt.Sprintf("%s at byte %d (the end)", e.what, e.at)
	}
	return fmt.Sprintf("%s at byte %d: %q", e.what, e.at, clip(sanitize([]byte(tail[:min(len(tail), 32)])), 24))
}

func isWS(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

func skipWS(s string, i int) int {
	i, _ = next(s, i)
	return i
}

// next returns the index of the first byte at or after i that is not a
// space, and that byte: 0 at the end of s. The byte comes back so that the
// caller's test of it is not a second bounds-checked load.
func next(s string, i int) (int, byte) {
	for ; uint(i) < uint(len(s)); i++ {
		if c := s[i]; c > ' ' || !isWS(c) {
			return i, c
		}
	}
	return i, 0
}

// Masks for finding a byte in eight at a time.
const (
	swarLo    = 0x0101010101010101
	swarHi    = 0x8080808080808080
	swarQuote = '"' * swarLo
	swarBack  = '\\' * swarLo
	swarCtl   = 0x20 * swarLo
)

// load64 reads s[i:i+8] as a little-endian word; the caller checks that
// i+8 <= len(s).
func load64(s string, i int) uint64 {
	return binary.LittleEndian.Uint64(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(unsafe.StringData(s)), i)), 8))
}

// bytesOf is s's bytes without a copy, for reading only.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// stringEnd finds the end of the string whose text starts at s[i] (just
// past its opening quote): the index just past its closing quote, and
// whether its text holds a backslash. ok is false when the string is not
// JSON: then end is the index of a control character (JSON wants it
// escaped) or of a backslash that starts no JSON escape, or len(s) when
// the string is not closed (see stringError). It looks at eight bytes at
// a time.
func stringEnd(s string, i int) (end int, esc, ok bool) {
	for ; i+8 <= len(s); i += 8 {
		x := load64(s, i)
		q, b := x^swarQuote, x^swarBack
		// The lowest flagged byte is the first '"', '\\' or control
		// character (a byte under 0x20).
		if m := ((q-swarLo)&^q | (b-swarLo)&^b | (x-swarCtl)&^x) & swarHi; m != 0 {
			i += bits.TrailingZeros64(m) >> 3
			switch s[i] {
			case '"':
				return i + 1, false, true
			case '\\':
				end, ok := escapedStringEnd(s, i)
				return end, true, ok
			}
			return i, false, false
		}
	}
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return i + 1, false, true
		case c == '\\':
			end, ok := escapedStringEnd(s, i)
			return end, true, ok
		case c < 0x20:
			return i, false, false
		}
	}
	return len(s), false, false
}

// escapedStringEnd finishes stringEnd from the backslash at s[i]: the
// closing quote is the first one not escaped. Every escape must be one of
// JSON's (\\" \\\\ \\/ \\b \\f \\n \\r \\t, \\u and four hex digits).
func escapedStringEnd(s string, i int) (int, bool) {
	for i < len(s) {
		switch c := s[i]; {
		case c == '\\':
			if i+1 >= len(s) {
				return len(s), false
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s) || !isHex(s[i+2]) || !isHex(s[i+3]) || !isHex(s[i+4]) || !isHex(s[i+5]) {
					return i, false
				}
				i += 6
			default:
				return i, false
			}
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		default:
			i++
		}
	}
	return len(s), false
}

func isHex(c byte) bool { return c-'0' <= 9 || (c|0x20)-'a' <= 5 }

// stringError is the syntax error of a string that starts with the quote
// at s[start] and that stringEnd refused at end.
func stringError(s string, start, end int) error {
	switch {
	case end >= len(s):
		return &jsonError{"string not closed", start, s}
	case s[end] == '\\':
		return &jsonError{"invalid escape in a string", end, s}
	}
	return &jsonError{"control character in a string (JSON wants it escaped)", end, s}
}

// numberEnd finds the end of the number token at s[i]: a run of digits,
// '.', '-', '+', 'e' and 'E' (the caller checks that it is a JSON number).
// ok is false when there is none.
func numberEnd(s string, i int) (int, bool) {
	start := i
	for ; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' || c == '.' || c == '-' || c == 'e' || c == 'E' || c == '+' {
			continue
		}
		break
	}
	return i, i > start
}

// scanValue validates the value at s[i] (no leading space) and returns its
// kind and the index just past it.
func (st *state) scanValue(s string, i, depth int) (jv, int, error) {
	if i >= len(s) {
		return jv{}, i, &jsonError{"value expected", i, s}
	}
	depth++
	if depth > maxJSONDepth {
		return jv{}, i, &jsonError{fmt.Sprintf("nested deeper than %d levels", maxJSONDepth), i, s}
	}
	switch c := s[i]; c {
	case '{':
		t := int32(len(st.tape))
		end, err := st.scanObject(s, i+1, depth, nil)
		return jv{s: s[i:end], k: jObject, t: t}, end, err
	case '[':
		t := int32(len(st.tape))
		end, err := st.scanArray(s, i+1, depth)
		return jv{s: s[i:end], k: jArray, t: t}, end, err
	case '"':
		end, esc, ok := stringEnd(s, i+1)
		if !ok {
			return jv{}, end, stringError(s, i, end)
		}
		st.tape = append(st.tape, tapeEntry(end-i-2, esc))
		return jv{s: s[i+1 : end-1], k: jString, esc: esc}, end, nil
	case 't':
		if strings.HasPrefix(s[i:], "true") {
			return jv{s: "true", k: jTrue}, i + 4, nil
		}
	case 'f':
		if strings.HasPrefix(s[i:], "false") {
			return jv{s: "false", k: jFalse}, i + 5, nil
		}
	case 'n':
		if strings.HasPrefix(s[i:], "null") {
			return jv{s: "null", k: jNull}, i + 4, nil
		}
	default:
		if end, ok := numberEnd(s, i); ok {
			if !IsNumberLiteral(s[i:end]) {
				return jv{}, i, &jsonError{fmt.Sprintf("%q is not a number", clip(s[i:end], 32)), i, s}
			}
			return jv{s: s[i:end], k: jNumber}, end, nil
		}
	}
	return jv{}, i, &jsonError{"unexpected value", i, s}
}

// scanObject validates the members of the object whose '{' is just before
// s[i] and returns the index past its '}'. When fields is not nil, the
// first value of each top-level field of a message is recorded there.
func (st *state) scanObject(s string, i, depth int, fields *msgFields) (int, error) {
	i, c := next(s, i)
	if c == '}' {
		return i + 1, nil
	}
	for {
		if c != '"' {
			return i, &jsonError{"object key expected", i, s}
		}
		kend, kesc, ok := stringEnd(s, i+1)
		if !ok {
			return kend, stringError(s, i, kend)
		}
		key := s[i+1 : kend-1]
		st.tape = append(st.tape, tapeEntry(len(key), kesc))
		if i, c = next(s, kend); c != ':' {
			return i, &jsonError{"':' expected after an object key", i, s}
		}
		i, c = next(s, i+1)
		var v jv
		var end int
		if c == '"' && depth < maxJSONDepth {
			// Most values are strings: scanValue's work, inline.
			var esc, ok bool
			if end, esc, ok = stringEnd(s, i+1); !ok {
				return end, stringError(s, i, end)
			}
			st.tape = append(st.tape, tapeEntry(end-i-2, esc))
			v = jv{s: s[i+1 : end-1], k: jString, esc: esc}
		} else {
			var err error
			if v, end, err = st.scanValue(s, i, depth); err != nil {
				return end, err
			}
		}
		if fields != nil {
			fields.set(st.key(key, kesc), v)
		}
		switch i, c = next(s, end); c {
		case ',':
			i, c = next(s, i+1)
		case '}':
			return i + 1, nil
		default:
			if i >= len(s) {
				return i, &jsonError{"object not closed", i, s}
			}
			return i, &jsonError{"',' or '}' expected after an object value", i, s}
		}
	}
}

// scanArray validates the elements of the array whose '[' is just before
// s[i] and returns the index past its ']'.
func (st *state) scanArray(s string, i, depth int) (int, error) {
	i, c := next(s, i)
	if c == ']' {
		return i + 1, nil
	}
	for {
		_, end, err := st.scanValue(s, i, depth)
		if err != nil {
			return end, err
		}
		switch i, c = next(s, end); c {
		case ',':
			i = skipWS(s, i+1)
		case ']':
			return i + 1, nil
		default:
			if i >= len(s) {
				return i, &jsonError{"array not closed", i, s}
			}
			return i, &jsonError{"',' or ']' expected after an array value", i, s}
		}
	}
}

// scanRecord validates a record's JSON and returns its value. When that
// is an object, its top-level fields are recorded in fields. Each
// string's length goes on st's tape, in the order of the text.
func (st *state) scanRecord(s string, fields *msgFields) (jv, error) {
	st.tape = st.tape[:0]
	i := skipWS(s, 0)
	var v jv
	var end int
	var err error
	if i < len(s) && s[i] == '{' {
		end, err = st.scanObject(s, i+1, 1, fields)
		v = jv{s: s[i:min(end, len(s))], k: jObject}
	} else {
		v, end, err = st.scanValue(s, i, 0)
	}
	if err != nil {
		return jv{}, err
	}
	if end = skipWS(s, end); end < len(s) {
		return jv{}, &jsonError{"text after the value", end, s}
	}
	return v, nil
}

// The reading below is of text that scanRecord has validated: it trusts
// the structure, and takes each string's length from the tape that
// scanRecord wrote instead of looking for its end again.

// tapeEsc marks a tape entry whose string holds a backslash.
const tapeEsc = 1 << 31

// tapeEntry is a string's tape entry: the length of its text (between
// the quotes) and whether it holds a backslash.
func tapeEntry(n int, esc bool) uint32 {
	if esc {
		return uint32(n) | tapeEsc
	}
	return uint32(n)
}

// cursor reads validated text: an index into s and the tape entry of the
// next string.
type cursor struct {
	s    string
	i    int
	t    int32
	tape []uint32
}

// cursor returns a cursor at the first member or element of o, an object
// or array.
func (st *state) cursor(o jv) cursor { return cursor{s: o.s, i: 1, t: o.t, tape: st.tape} }

// more moves to the next member or element, past a ',' and spaces. At the
// end it moves past the closing bracket and returns false.
func (c *cursor) more() bool {
	i, b := next(c.s, c.i)
	if b == ',' {
		i, b = next(c.s, i+1)
	}
	if b == '}' || b == ']' {
		i++
		c.i = i
		return false
	}
	c.i = i
	return true
}

// str reads the string at c.i: its text, still escaped, and whether it
// holds a backslash.
func (c *cursor) str() (string, bool) {
	e := c.tape[c.t]
	c.t++
	n := int(e &^ tapeEsc)
	text := c.s[c.i+1 : c.i+1+n]
	c.i += n + 2
	return text, e&tapeEsc != 0
}

// key reads a member's key and moves to its value.
func (c *cursor) key() (string, bool) {
	k, esc := c.str()
	i, _ := next(c.s, c.i) // at ':'
	c.i, _ = next(c.s, i+1)
	return k, esc
}

// value reads the value at c.i.
func (c *cursor) value() jv {
	s, i := c.s, c.i
	switch s[i] {
	case '"':
		text, esc := c.str()
		return jv{s: text, k: jString, esc: esc}
	case '{', '[':
		t := c.t
		c.skip()
		k := jObject
		if s[i] == '[' {
			k = jArray
		}
		return jv{s: s[i:c.i], k: k, t: t}
	case 't':
		c.i += 4
		return jv{s: "true", k: jTrue}
	case 'f':
		c.i += 5
		return jv{s: "false", k: jFalse}
	case 'n':
		if s[i+1] == 'u' {
			c.i += 4
			return jv{s: "null", k: jNull}
		}
		c.i += 3
		return jv{s: s[i:c.i], k: jNumber}
	}
	c.i, _ = numberEnd(s, i)
	return jv{s: s[i:c.i], k: jNumber}
}

// skip moves past the object or array at c.i.
func (c *cursor) skip() {
	depth := 0
	for {
		switch c.s[c.i] {
		case '"':
			c.str()
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				c.i++
				return
			}
		}
		c.i++
	}
}

// empty reports whether o, an object or array, has no members.
func (o jv) empty() bool {
	c := o.s[skipWS(o.s, 1)]
	return c == '}' || c == ']'
}

// get returns the first member of object o whose key, unescaped, is key.
func (st *state) get(o jv, key string) jv { return st.find(o, bytesOf(key)) }

// find returns the first member of object o whose key, unescaped, is key.
// It unescapes o's keys in st's string scratch, so key may be in the key
// scratch.
func (st *state) find(o jv, key []byte) jv {
	if o.k != jObject {
		return jv{}
	}
	for c := st.cursor(o); c.more(); {
		k, kesc := c.key()
		v := c.value()
		if string(st.text(jv{s: k, esc: kesc})) == string(key) {
			return v
		}
	}
	return jv{}
}

// key returns an object key's text, unescaped (in st's key scratch when
// it holds escapes).
func (st *state) key(k string, esc bool) []byte {
	if !esc {
		return bytesOf(k)
	}
	st.kbuf = unescape(st.kbuf[:0], k)
	return st.kbuf
}

// text returns a string's text, unescaped (in st's string scratch when it
// holds escapes).
func (st *state) text(v jv) []byte {
	if !v.esc {
		return bytesOf(v.s)
	}
	st.ubuf = unescape(st.ubuf[:0], v.s)
	return st.ubuf
}

// unescape appends s with its escapes undone to dst, the way fastjson
// does: an escape it does not know, or a \u with bad hex digits, is kept
// as it is, as is a lone surrogate's \u.
func unescape(dst []byte, s string) []byte {
	for {
		n := strings.IndexByte(s, '\\')
		if n < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:n]...)
		s = s[n+1:]
		if len(s) == 0 {
			return append(dst, '\\')
		}
		ch := s[0]
		s = s[1:]
		switch ch {
		case '"', '\\', '/':
			dst = append(dst, ch)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			if len(s) < 4 {
				dst = append(dst, `\u`...)
				break
			}
			x, err := strconv.ParseUint(s[:4], 16, 16)
			if err != nil {
				dst = append(dst, `\u`...)
				break
			}
			xs := s[:4]
			s = s[4:]
			if !utf16.IsSurrogate(rune(x)) {
				dst = append(dst, string(rune(x))...)
				break
			}
			if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
				dst = append(dst, `\u`...)
				dst = append(dst, xs...)
				break
			}
			x1, err := strconv.ParseUint(s[2:6], 16, 16)
			if err != nil {
				dst = append(dst, `\u`...)
				dst = append(dst, xs...)
				break
			}
			dst = append(dst, string(utf16.DecodeRune(rune(x), rune(x1)))...)
			s = s[6:]
		default:
			dst = append(dst, '\\', ch)
		}
	}
}

// quoteText appends text as a JSON string: as it is between quotes when
// nothing in it needs escaping, else with JSON's escapes. Bytes from 0x80
// are copied as they are; the caller sanitizes the result's UTF-8.
func quoteText(dst, text []byte) []byte {
	special := false
	for _, c := range text {
		if c < 0x20 || c == '"' || c == '\\' {
			special = true
			break
		}
	}
	dst = append(dst, '"')
	if !special {
		dst = append(dst, text...)
		return append(dst, '"')
	}
	// JSON's escapes, not Go's (strconv.Quote writes \x01, \a, \v and
	// escapes non-printable runes as \U0010ffff, none of which is JSON). A
	// NUL is dropped, as from every text value (SPEC §7): Postgres's jsonb
	// refuses \u0000, so the text stays castable.
	const hex = "0123456789abcdef"
	for _, c := range text {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c == 0:
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// compact appends the JSON text s (valid) to dst without the space
// between tokens. With canon, every string and key is unescaped and
// quoted again by quoteText. dst must not be st's string scratch.
func (st *state) compact(dst []byte, s string, canon bool) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case isWS(c):
			i++
		case c == '"':
			end, esc, _ := stringEnd(s, i+1)
			if canon {
				dst = quoteText(dst, st.text(jv{s: s[i+1 : end-1], esc: esc}))
			} else {
				dst = append(dst, s[i:end]...)
			}
			i = end
		case c == '{' || c == '}' || c == '[' || c == ']' || c == ',' || c == ':':
			dst = append(dst, c)
			i++
		default:
			c := cursor{s: s, i: i}
			v := c.value() // a number, true, false or null
			dst = append(dst, v.s...)
			i = c.i
		}
	}
	return dst
}
