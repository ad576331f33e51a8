package schema

import (
	"strings"
	"testing"
)

// The decoder reads JSON from the record's text (json.go). When it
// replaced the fastjson tree, 306,000 records (the sample generator, the
// corpus, the fuzz corpus and random mutations of them) decoded to the
// same rows, discards and rejection codes as before; these cases pin the
// behaviours that comparison covered.

func TestJSONKeysAreComparedUnescapedFirstWins(t *testing.T) {
	d := decodeJSON(t, Config{}, "web", `{"t\u0079pe":"track","type":"identify","userId":"u","event":"E",`+
		`"properties":{"a":1,"a":2,"a\u0062":3,"ab":4,"k\"q":5}}`)
	row := oneRow(t, d, "e")
	// "a" twice lands on one column: the later wins; "ab" spelled two ways
	// likewise.
	wantCol(t, row, "a", BigInt, "2")
	wantCol(t, row, "ab", BigInt, "4")
	wantCol(t, row, "k_q", BigInt, "5")
	if len(d.Discards) != 2 {
		t.Errorf("want the two losing duplicates discarded, got %+v", d.Discards)
	}
}

func TestJSONStringsAcrossWordBoundaries(t *testing.T) {
	// Escaped quotes and backslashes at every offset of the eight-byte
	// scan, and strings that end at the end of the record.
	for pad := 0; pad < 17; pad++ {
		p := strings.Repeat("x", pad)
		js := `{"type":"track","userId":"u","event":"E","properties":{"` + p + `k":"` + p + `a\"b\\","` + p + `z":"` + p + `\\"}}`
		d := decodeJSON(t, Config{}, "web", js)
		row := oneRow(t, d, "e")
		wantCol(t, row, p+"k", Text, p+`a"b\`)
		wantCol(t, row, p+"z", Text, p+`\`)
	}
}

func TestJSONEscapes(t *testing.T) {
	d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","event":"E","properties":`+
		`{"s":"a\ud83d\ude00b\ud83dx\/\n\u00e9\u00E9"}}`)
	// A lone surrogate (JSON's grammar allows it) stays as sent.
	wantCol(t, oneRow(t, d, "e"), "s", Text, "a😀b\\ud83dx/\néé")
}

// A string that is not JSON rejects its record, wherever it is (SPEC §9):
// an escape JSON does not have, \u without four hex digits, a raw control
// character (a tab, a newline: JSON wants them escaped), in a value or a
// key, read by the loader or not, at every offset of the eight-byte scan.
func TestJSONBadStringsReject(t *testing.T) {
	for pad := 0; pad < 17; pad++ {
		p := strings.Repeat("x", pad)
		for _, c := range []struct{ bad, want string }{
			{`\q`, "invalid escape"},
			{`\uzzzz`, "invalid escape"},
			{`\u12`, "invalid escape"},
			{`\'`, "invalid escape"},
			{"\t", "control character"},
			{"\n", "control character"},
			{"\x00", "control character"},
			{"\x1f", "control character"},
			{`a\"` + "\x01", "control character"},
		} {
			for _, js := range []string{
				`{"type":"track","userId":"u","event":"E","properties":{"s":"` + p + c.bad + `"}}`,
				`{"type":"track","userId":"u","event":"E","properties":{"` + p + c.bad + `":1}}`,
				`{"type":"track","userId":"u","event":"E","options":{"s":"` + p + c.bad + `"}}`,
			} {
				d := decodeJSON(t, Config{}, "web", js)
				if len(d.Rows) != 0 || len(d.Rejected) != 1 || d.Rejected[0].Code != "invalid_json" ||
					!strings.Contains(d.Rejected[0].Reason, c.want) {
					t.Fatalf("%q: want rejected for %s, got rows %d rejected %+v", js, c.want, len(d.Rows), d.Rejected)
				}
			}
		}
	}
	// DEL and bytes past ASCII are not control characters to JSON.
	d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","event":"E","properties":{"s":"a`+"\x7f"+`é"}}`)
	wantCol(t, oneRow(t, d, "e"), "s", Text, "a\x7fé")
}

func TestJSONArraysAndObjectValuesAsText(t *testing.T) {
	d := decodeJSON(t, Config{}, "web", `{"type":"page","userId":"u",`+
		`"name":{"a" : "b\u0041", "c":[1, 2]},"category":[ "x\u00e9\n" , 1e5, {"k\u0041" : "v\/"}, [true, null] ],`+
		`"properties":{"list":[ 1 , "a\"b" ]}}`)
	row := oneRow(t, d, "pages")
	// An object where a scalar belongs keeps its text, spaces dropped.
	wantCol(t, row, "name", Text, `{"a":"b\u0041","c":[1,2]}`)
	// An array's strings are unescaped and quoted again, one way.
	wantCol(t, row, "category", Text, `["xé\n",1e5,{"kA":"v/"},[true,null]]`)
	wantCol(t, row, "list", Text, `[1,"a\"b"]`)
}

func TestJSONNumberTokens(t *testing.T) {
	for _, c := range []struct{ props, want string }{
		{`{"x":1.2.3}`, `"1.2.3" is not a number`},
		{`{"x":[1,e]}`, `"e" is not a number`},
		{`{"x":[1,1e]}`, `"1e" is not a number`},
		{`{"x":-Inf}`, `"-" is not a number`},
		{`{"x":nan}`, `unexpected value`},
		{`{"x":01}`, `"01" is not a number`},
		{`{"x":+1}`, `"+1" is not a number`},
		{`{"x":.5}`, `".5" is not a number`},
	} {
		d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","event":"E","properties":`+c.props+`}`)
		if len(d.Rows) != 0 || len(d.Rejected) != 1 || d.Rejected[0].Code != "invalid_json" ||
			!strings.Contains(d.Rejected[0].Reason, c.want) {
			t.Errorf("%s: want rejected with %s, got rows %d rejected %+v", c.props, c.want, len(d.Rows), d.Rejected)
		}
	}
	// A bad token where nothing reads it rejects the record all the same:
	// the record is not JSON.
	d := decodeJSON(t, Config{}, "web", `{"type":"track","userId":"u","event":"E","options":{"n":1.2.3}}`)
	if len(d.Rows) != 0 || len(d.Rejected) != 1 || !strings.Contains(d.Rejected[0].Reason, `"1.2.3" is not a number`) {
		t.Errorf("want the record rejected, got rows %d rejected %+v", len(d.Rows), d.Rejected)
	}
}

func TestJSONDepthLimit(t *testing.T) {
	nest := func(levels int, leaf string) string {
		// The record is level 1, properties level 2.
		return `{"type":"track","userId":"u","event":"E","properties":` +
			strings.Repeat(`{"a":`, levels-2) + leaf + strings.Repeat(`}`, levels-2) + `}`
	}
	for _, leaf := range []string{`1`, `"s"`, `[]`} {
		if d := decodeJSON(t, Config{}, "web", nest(maxJSONDepth, leaf)); len(d.Rows) != 2 {
			t.Errorf("%d levels to %s: want loaded, got %+v", maxJSONDepth, leaf, d.Rejected)
		}
		if d := decodeJSON(t, Config{}, "web", nest(maxJSONDepth+1, leaf)); len(d.Rejected) != 1 || !strings.Contains(d.Rejected[0].Reason, "nested deeper") {
			t.Errorf("%d levels to %s: want rejected for depth, got rows %d %+v", maxJSONDepth+1, leaf, len(d.Rows), d.Rejected)
		}
	}
}

func TestJSONSyntaxErrorsSayWhere(t *testing.T) {
	for _, c := range []struct{ js, want string }{
		{`{"type":"track",,}`, `object key expected at byte 16`},
		{`{"type":"track"} x`, `text after the value at byte 17`},
		{`{"type":"tra`, `string not closed at byte 8`},
		{`{"type" "track"}`, `':' expected`},
		{`{"a":[1 2]}`, `',' or ']' expected`},
		{`{"a":tru}`, `unexpected value at byte 5`},
	} {
		d := decodeJSON(t, Config{}, "web", c.js)
		if len(d.Rejected) != 1 || d.Rejected[0].Code != "invalid_json" || !strings.Contains(d.Rejected[0].Reason, c.want) {
			t.Errorf("%s: want invalid_json saying %q, got %+v", c.js, c.want, d.Rejected)
		}
	}
}

func TestJSONBatchKeepsEachMessagesText(t *testing.T) {
	js := `{"batch":[ {"type":"track","userId":"u","event":"E"} , {"type" : "x"}, "str" ],` +
		`"context":{"ip":"2","lib\u0072ary":{"name":"l"}},"sentAt":"2024-01-01T00:00:00Z"}`
	d := decodeJSON(t, Config{}, "web", js)
	if len(d.Rows) != 2 || len(d.Rejected) != 2 {
		t.Fatalf("want one message loaded and two rejected, got rows %d rejected %+v", len(d.Rows), d.Rejected)
	}
	if string(d.Rejected[0].Raw) != `{"type" : "x"}` || string(d.Rejected[1].Raw) != `"str"` {
		t.Errorf("rejected messages do not keep their text: %q %q", d.Rejected[0].Raw, d.Rejected[1].Raw)
	}
	row := oneRow(t, d, "e")
	wantCol(t, row, "context_ip", Text, "2")
	wantCol(t, row, "context_library_name", Text, "l")
}
