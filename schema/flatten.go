package schema

import (
	"strings"
	"sync"

	"github.com/valyala/fastjson"
)

// state is the per-goroutine scratch space of a decode: the JSON parser and
// caches of names already worked out. Pooled, so the hot path allocates
// little beyond the rows it returns.
type state struct {
	p        fastjson.Parser
	props    map[string]nameEntry // original key path → column (properties, traits)
	ctx      map[string]nameEntry // context key path → column
	dotted   []byte
	segKeys  []string       // original keys of the current segment's columns
	segIndex map[string]int // column name → index in the segment, for large segments
	events   map[string]eventEntry
	num      []byte // scratch for number literals and array text
	// badNumber is set when a number token of the message is not valid
	// JSON; the message is then rejected.
	badNumber string
	arena     arena // the current record's text; replaced per record
}

type eventEntry struct{ name, table string }

// eventNames returns the event column value and the table of a track event.
func (s *state) eventNames(event string) eventEntry {
	if e, ok := s.events[event]; ok {
		return e
	}
	e := eventEntry{name: EventName(event), table: EventTable(event)}
	if len(s.events) >= maxCachedNames {
		clear(s.events)
	}
	s.events[strings.Clone(event)] = e
	return e
}

type nameEntry struct {
	name string // column name, "" when the key names nothing
	key  string // the original key path, sanitized
}

// maxCachedNames bounds each name cache; past it the cache starts over, so
// a stream of ever-new keys cannot grow memory without bound.
const maxCachedNames = 20000

var states = sync.Pool{New: func() any {
	return &state{
		props:  make(map[string]nameEntry),
		ctx:    make(map[string]nameEntry),
		events: make(map[string]eventEntry),
		dotted: make([]byte, 0, 128),
	}
}}

// lookup names the current dotted path through the cache.
func (s *state) lookup(cache map[string]nameEntry, namer func(string) (string, bool)) nameEntry {
	if e, ok := cache[string(s.dotted)]; ok {
		return e
	}
	raw := string(s.dotted)
	name, ok := namer(raw)
	if !ok {
		name = ""
	}
	e := nameEntry{name: name, key: sanitize(s.dotted)}
	if len(cache) >= maxCachedNames {
		clear(cache)
	}
	cache[raw] = e
	return e
}

// flattener appends the leaves of one object (SPEC §5) to a row's columns,
// as one segment starting at base, resolving keys that land on one column
// (SPEC §6 rule 6).
type flattener struct {
	mc     *msgCtx
	st     *state
	table  string
	cache  map[string]nameEntry
	namer  func(string) (string, bool)
	prefix string // put before original keys in discards ("context.")
	cols   []Col
	base   int
}

func (mc *msgCtx) newFlattener(cols []Col, table string, context bool) *flattener {
	f := &flattener{mc: mc, st: mc.st, table: table, cols: cols, base: len(cols)}
	if context {
		f.cache, f.namer, f.prefix = mc.st.ctx, ContextColumn, "context."
	} else {
		f.cache, f.namer = mc.st.props, ColumnName
	}
	f.st.dotted = f.st.dotted[:0]
	f.st.segKeys = f.st.segKeys[:0]
	clear(f.st.segIndex)
	return f
}

func (f *flattener) walk(o *fastjson.Object) {
	o.Visit(func(k []byte, v *fastjson.Value) {
		dl := len(f.st.dotted)
		if dl > 0 {
			f.st.dotted = append(f.st.dotted, '.')
		}
		f.st.dotted = append(f.st.dotted, k...)
		f.value(v)
		f.st.dotted = f.st.dotted[:dl]
	})
}

func (f *flattener) value(v *fastjson.Value) {
	if v.Type() == fastjson.TypeObject {
		sub, _ := v.Object()
		f.walk(sub)
	} else if val, ok := f.st.jsonValue(v); ok {
		f.add(val)
	}
}

func (f *flattener) add(val Value) {
	e := f.st.lookup(f.cache, f.namer)
	if e.name == "" {
		f.mc.discard(f.table, f.prefix+e.key, val.Text(), "unnamed_key", "key has no ASCII letters or digits, so it cannot name a column")
		return
	}
	seg := f.cols[f.base:]
	if f.st.segIndex == nil || len(f.st.segIndex) == 0 && len(seg) < 16 {
		for i := range seg {
			if seg[i].Name == e.name {
				f.collide(i, e, val)
				return
			}
		}
		if len(seg) == 15 {
			if f.st.segIndex == nil {
				f.st.segIndex = make(map[string]int)
			}
			for i := range seg {
				f.st.segIndex[seg[i].Name] = i
			}
		}
	} else if i, ok := f.st.segIndex[e.name]; ok {
		f.collide(i, e, val)
		return
	}
	if len(f.st.segIndex) > 0 {
		f.st.segIndex[e.name] = len(seg)
	}
	f.cols = append(f.cols, Col{Name: e.name, Val: val})
	f.st.segKeys = append(f.st.segKeys, e.key)
}

// collide keeps the value whose original key sorts last and discards the
// other (SPEC §6 rule 6).
func (f *flattener) collide(i int, e nameEntry, val Value) {
	old := &f.cols[f.base+i]
	oldKey := f.st.segKeys[i]
	if e.key >= oldKey {
		f.mc.discard(f.table, f.prefix+oldKey, old.Val.Text(), "collision", "key lands on column "+e.name+" like "+f.prefix+e.key+", which sorts last and wins")
		old.Val = val
		f.st.segKeys[i] = e.key
		return
	}
	f.mc.discard(f.table, f.prefix+e.key, val.Text(), "collision", "key lands on column "+e.name+" like "+f.prefix+oldKey+", which sorts last and wins")
}

// sectionCols appends the flattened properties or traits to cols. Columns
// in top (a page's top-level name and category) win over properties of the
// same name.
func (mc *msgCtx) sectionCols(cols []Col, v *fastjson.Value, table string, top []Col) []Col {
	if v == nil || v.Type() != fastjson.TypeObject {
		if v != nil && v.Type() != fastjson.TypeNull {
			mc.discard(table, "properties", sanitize(v.MarshalTo(nil)), "not_object", "properties/traits is not an object")
		}
		return cols
	}
	o, _ := v.Object()
	if o.Len() == 0 {
		return cols
	}
	f := mc.newFlattener(cols, table, false)
	f.walk(o)
	if len(top) == 0 {
		return f.cols
	}
	kept := f.cols[:f.base]
	for i, c := range f.cols[f.base:] {
		shadowed := false
		for _, t := range top {
			if t.Name == c.Name {
				shadowed = true
				break
			}
		}
		if shadowed {
			mc.discard(table, f.st.segKeys[i], c.Val.Text(), "collision", "the top-level "+c.Name+" wins over properties."+c.Name)
			continue
		}
		kept = append(kept, c)
	}
	return kept
}

// contextCols appends the flattened context, merged with the envelope's
// (the message's own top-level keys win), to cols.
func (mc *msgCtx) contextCols(cols []Col, v *fastjson.Value, env *envelope, table string) []Col {
	f := mc.newFlattener(cols, table, true)
	var own *fastjson.Object
	if v != nil && v.Type() == fastjson.TypeObject {
		own, _ = v.Object()
		f.walk(own)
	} else if v != nil && v.Type() != fastjson.TypeNull {
		mc.discard(table, "context", sanitize(v.MarshalTo(nil)), "not_object", "context is not an object")
	}
	if env != nil && env.context != nil && env.context.Type() == fastjson.TypeObject {
		eo, _ := env.context.Object()
		eo.Visit(func(k []byte, ev *fastjson.Value) {
			if own != nil && own.Get(string(k)) != nil {
				return
			}
			f.st.dotted = append(f.st.dotted[:0], k...)
			f.value(ev)
			f.st.dotted = f.st.dotted[:0]
		})
	}
	return f.cols
}
