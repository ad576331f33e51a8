package schema

import (
	"strings"
	"sync"
)

// state is the per-goroutine scratch space of a decode: caches of names
// already worked out and scratch buffers. Pooled, so the hot path allocates
// little beyond the rows it returns.
type state struct {
	props  nameCache // property and trait key paths → columns
	ctx    nameCache // context key paths → columns
	events map[string]eventEntry
	// ids numbers the distinct column names of both caches, so that a
	// flattener finds two keys landing on one column (SPEC §6 rule 6) by
	// index instead of by comparing or hashing names.
	ids     map[string]int32
	seen    []seenSlot // by name id: where the name is in the current segment
	gen     uint32     // the current segment's generation, see seenSlot
	segKeys []string   // original keys of the current segment's columns
	num     []byte     // scratch for array text
	tape    []uint32   // the record's string lengths (json.go)
	kbuf    []byte     // scratch for an unescaped key
	ubuf    []byte     // scratch for an unescaped string
	arena   arena      // text of the values, in chunks shared by records
	mc      msgCtx     // the current message's context
	// slab holds the columns of the messages decoded so far (up to its
	// length); a message's columns are built in place after them (see
	// slabTail and claim).
	slab []Col
	// lastSource is the source of the last message decoded, lastSchema
	// its schema name.
	lastSource, lastSchema string
}

// release returns s to the pool. Its arena and slab keep the current
// chunks, which the records decoded so far share but never write again.
func (s *state) release() {
	s.mc = msgCtx{}
	states.Put(s)
}

// slabChunk is the number of columns in a slab chunk: a few dozen typical
// messages. slabRoom is the free room a message starts with; one with more
// columns outgrows it into memory of its own.
const (
	slabChunk = 2048
	slabRoom  = 128
)

// slabTail returns the empty slice a message builds its columns in: the
// free part of the current slab chunk, at least slabRoom long. Records
// share chunks instead of each allocating its columns.
func (s *state) slabTail() []Col {
	if cap(s.slab)-len(s.slab) < slabRoom {
		s.slab = make([]Col, 0, slabChunk)
	}
	return s.slab[len(s.slab):len(s.slab)]
}

// claim marks the message's columns, built from slabTail, as used. When
// they outgrew the chunk into memory of their own, the rest of the chunk
// is given up: a row cut from them before they outgrew it would still
// point there.
func (s *state) claim(cols []Col) {
	n := len(s.slab)
	if n < cap(s.slab) && len(cols) > 0 && &cols[0] == &s.slab[:n+1][n] {
		s.slab = s.slab[:n+len(cols)]
		return
	}
	s.slab = s.slab[:cap(s.slab)]
}

// seenSlot says that a name id has a column at index idx of the segment of
// generation gen.
type seenSlot struct {
	gen uint32
	idx int32
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
	id   int32  // the name's id (state.ids), when name is not ""
}

// maxCachedNames bounds each name cache; past it the caches start over, so
// a stream of ever-new keys cannot grow memory without bound.
const maxCachedNames = 20000

var states = sync.Pool{New: func() any {
	return &state{
		props:  nameCache{root: &nameNode{}, namer: ColumnName},
		ctx:    nameCache{root: &nameNode{}, namer: ContextColumn},
		events: make(map[string]eventEntry),
		ids:    make(map[string]int32),
	}
}}

// nameCache caches the names of key paths as a tree that mirrors the JSON
// objects: a node per object path, a child per key. Events of one kind come
// with their keys in the same order, so the child a key finds is almost
// always the one after the previous key's: one string comparison instead of
// building the dotted path and hashing it.
type nameCache struct {
	root  *nameNode
	size  int // children in the tree
	namer func(string) (string, bool)
}

// nameNode is an object path ("" for the top) and the keys seen under it.
type nameNode struct {
	path  string // dotted path of the object, as SPEC §5 joins it
	kids  []nameKid
	index map[string]int32 // key → index in kids, once there are many
}

// nameKid is one key of an object: its name as a leaf, and its node when
// its value is an object.
type nameKid struct {
	key   string
	named bool
	entry nameEntry
	node  *nameNode
}

// kidIndexAt is the number of children past which a node indexes them.
const kidIndexAt = 12

// childPath joins a parent path and a key the way the flattener always
// has: a '.' between them unless the parent path is empty.
func childPath(parent, key string) string {
	if len(parent) == 0 {
		return key
	}
	return parent + "." + key
}

// kid returns the index of key k among n's children, adding it if new.
// hint is where the key is expected (right after the previous key).
func (c *nameCache) kid(n *nameNode, k []byte, hint int) int {
	if hint < len(n.kids) && n.kids[hint].key == string(k) {
		return hint
	}
	if n.index != nil {
		if i, ok := n.index[string(k)]; ok {
			return int(i)
		}
	} else {
		for i := range n.kids {
			if n.kids[i].key == string(k) {
				return i
			}
		}
	}
	i := len(n.kids)
	key := string(k)
	n.kids = append(n.kids, nameKid{key: key})
	c.size++
	if n.index != nil {
		n.index[key] = int32(i)
	} else if len(n.kids) > kidIndexAt {
		n.index = make(map[string]int32, 2*len(n.kids))
		for j := range n.kids {
			if _, dup := n.index[n.kids[j].key]; !dup {
				n.index[n.kids[j].key] = int32(j)
			}
		}
	}
	return i
}

// name works out the column of child kid of n.
func (s *state) name(c *nameCache, n *nameNode, kid *nameKid) {
	raw := childPath(n.path, kid.key)
	name, ok := c.namer(raw)
	if !ok {
		name = ""
	}
	kid.entry = nameEntry{name: name, key: sanitize([]byte(raw))}
	if name != "" {
		id, ok := s.ids[name]
		if !ok {
			id = int32(len(s.seen))
			s.ids[name] = id
			s.seen = append(s.seen, seenSlot{})
		}
		kid.entry.id = id
	}
	kid.named = true
}

// resetNames empties the name caches when one has grown past its bound.
// Only called between segments: entries in use stay valid.
func (s *state) resetNames() {
	if s.props.size < maxCachedNames && s.ctx.size < maxCachedNames {
		return
	}
	s.props.root, s.props.size = &nameNode{}, 0
	s.ctx.root, s.ctx.size = &nameNode{}, 0
	clear(s.ids)
	s.seen = s.seen[:0]
}

// flattener appends the leaves of one object (SPEC §5) to a row's columns,
// as one segment starting at base, resolving keys that land on one column
// (SPEC §6 rule 6).
type flattener struct {
	mc     *msgCtx
	st     *state
	c      *nameCache
	table  string
	prefix string // put before original keys in discards ("context.")
	cols   []Col
	base   int
	gen    uint32
}

func (mc *msgCtx) newFlattener(cols []Col, table string, context bool) flattener {
	st := mc.st
	st.resetNames()
	f := flattener{mc: mc, st: st, table: table, cols: cols, base: len(cols)}
	if context {
		f.c, f.prefix = &st.ctx, "context."
	} else {
		f.c = &st.props
	}
	st.gen++
	if st.gen == 0 {
		clear(st.seen)
		st.gen = 1
	}
	f.gen = st.gen
	st.segKeys = st.segKeys[:0]
	return f
}

// walk flattens the members of an object under node n, from c (past the
// '{') to past the '}'. Nested objects are walked where they are, in one
// pass over the text.
func (f *flattener) walk(c *cursor, n *nameNode) {
	hint := 0
	for c.more() {
		k, kesc := c.key()
		kid := f.c.kid(n, f.st.key(k, kesc), hint)
		hint = kid + 1
		// As in contextCols' envelope loop; inline, a call per member
		// cost 1% of a track's decode.
		if c.s[c.i] == '{' {
			c.i++
			f.walk(c, f.node(n, kid))
			continue
		}
		f.leaf(n, kid, c.value())
	}
}

// node returns the node of child i of n, whose value is an object.
func (f *flattener) node(n *nameNode, i int) *nameNode {
	kid := &n.kids[i]
	if kid.node == nil {
		kid.node = &nameNode{path: childPath(n.path, kid.key)}
	}
	return kid.node
}

// leaf adds v, the value of child i of n and not an object.
func (f *flattener) leaf(n *nameNode, i int, v jv) {
	if val, ok := f.st.jsonValue(v); ok {
		kid := &n.kids[i]
		if !kid.named {
			f.st.name(f.c, n, kid)
		}
		f.add(&kid.entry, val)
	}
}

func (f *flattener) add(e *nameEntry, val Value) {
	if e.name == "" {
		f.mc.discard(f.table, f.prefix+e.key, val.Text(), "unnamed_key", "key has no ASCII letters or digits, so it cannot name a column")
		return
	}
	s := &f.st.seen[e.id]
	if s.gen == f.gen {
		f.collide(int(s.idx), e, val)
		return
	}
	n := len(f.cols)
	s.gen, s.idx = f.gen, int32(n-f.base)
	if n < cap(f.cols) {
		// Field by field: appending a Col literal copies it with a bulk
		// write barrier while the GC marks.
		f.cols = f.cols[:n+1]
		c := &f.cols[n]
		c.Name, c.Val.Kind, c.Val.Str, c.Val.Int = e.name, val.Kind, val.Str, val.Int
	} else {
		f.cols = append(f.cols, Col{Name: e.name, Val: val})
	}
	f.st.segKeys = append(f.st.segKeys, e.key)
}

// collide keeps the value whose original key sorts last and discards the
// other (SPEC §6 rule 6).
func (f *flattener) collide(i int, e *nameEntry, val Value) {
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
func (mc *msgCtx) sectionCols(cols []Col, v jv, table string, top []Col) []Col {
	if v.k != jObject {
		if v.k != jAbsent && v.k != jNull {
			mc.discard(table, "properties", mc.st.marshalText(v), "not_object", "properties/traits is not an object")
		}
		return cols
	}
	if v.empty() {
		return cols
	}
	f := mc.newFlattener(cols, table, false)
	c := mc.st.cursor(v)
	f.walk(&c, f.c.root)
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
func (mc *msgCtx) contextCols(cols []Col, v jv, env *envelope, table string) []Col {
	f := mc.newFlattener(cols, table, true)
	root := f.c.root
	if v.k == jObject {
		c := mc.st.cursor(v)
		f.walk(&c, root)
	} else if v.k != jAbsent && v.k != jNull {
		mc.discard(table, "context", mc.st.marshalText(v), "not_object", "context is not an object")
	}
	if env != nil && env.context.k == jObject {
		hint := 0
		for c := mc.st.cursor(env.context); c.more(); {
			k, kesc := c.key()
			key := mc.st.key(k, kesc)
			if v.k == jObject && mc.st.find(v, key).k != jAbsent {
				c.value() // the message's own key wins
				continue
			}
			kid := f.c.kid(root, key, hint)
			hint = kid + 1
			if c.s[c.i] == '{' {
				c.i++
				f.walk(&c, f.node(root, kid))
				continue
			}
			f.leaf(root, kid, c.value())
		}
	}
	return f.cols
}
