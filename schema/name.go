package schema

import "strings"

// The namer turns names from input (source names, event names, flattened
// property and context keys) into Postgres identifiers (SPEC §2, §3, §6).
// Every function here is pure, allocation-light and safe for concurrent use:
// it runs on every key of every event.
//
// Every identifier returned (SchemaName, EventTable, ColumnName,
// ContextColumn) is either "" (or ok=false) or a non-empty string of
// [a-z0-9_] that does not start with a digit and is at most MaxIdentLen
// bytes long, so it is a valid Postgres identifier. Callers still quote it
// (pgx.Identifier.Sanitize): the namer makes names legal, quoting makes SQL
// safe.

// MaxIdentLen is Postgres's identifier limit in bytes (NAMEDATALEN-1).
const MaxIdentLen = 63

// identCut is the length a too-long identifier is cut to before
// "_" and 8 hex digits of its hash are appended: 54+1+8 = MaxIdentLen.
const identCut = MaxIdentLen - 1 - 8

// Snake snake-cases s as Segment's go-snakecase does (SPEC §6):
//
//   - only ASCII letters and digits survive; every other byte (space, '_',
//     '-', '.', '$', each byte of a non-ASCII character, NUL, invalid UTF-8)
//     separates words; a run of separators becomes one '_'; leading and
//     trailing separators are dropped;
//   - a word is a run of capitals followed by a run of lowercase letters
//     (digits anywhere in it), so lower→upper starts a new word
//     ("accountType" → "account_type") and a run of capitals absorbs the
//     lowercase tail ("HTMLParser" → "htmlparser", "productID" →
//     "product_id", "iOS" → "i_os");
//   - digits never start a word: they stick to the word before and do not
//     change whether a capital after them starts a new word ("abc123Def" →
//     "abc123_def", "ABC123def" → "abc123def", "2FA Enabled" →
//     "2fa_enabled", "v2Beta" → "v2_beta");
//   - the result is lowercase.
//
// The result matches ^([a-z0-9]+(_[a-z0-9]+)*)?$: "" when s has no ASCII
// letter or digit, never a leading, trailing or double '_'. Snake is
// idempotent. When s is already in that form it is returned as is, without
// allocating.
//
// Where go-snakecase deviates from these rules (it keeps a leading '_'
// before a lowercase letter, and moves the last digit of an all-lowercase
// prefix into the next word, "v2Beta" → "v_2beta"), SPEC §6 wins.
func Snake(s string) string {
	if isSnake(s) {
		return s
	}
	// Typical keys fit the stack buffer, so the only allocation is the
	// returned string.
	var buf [128]byte
	return string(appendSnake(buf[:0], s))
}

// isSnake reports whether s is already Snake's output for itself: lowercase
// letters, digits and single '_' between them.
func isSnake(s string) bool {
	if s == "" {
		return true
	}
	if s[0] == '_' || s[len(s)-1] == '_' {
		return false
	}
	prev := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '_':
			if prev == '_' {
				return false
			}
		default:
			return false
		}
		prev = c
	}
	return true
}

// appendSnake appends the snake case of s to b (see Snake).
func appendSnake(b []byte, s string) []byte {
	start := len(b)
	inWord := false // the previous byte was a letter or digit
	lower := false  // the current word has reached its lowercase tail
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
			if !inWord && len(b) > start {
				b = append(b, '_')
			}
			b = append(b, c)
			inWord, lower = true, true
		case c >= 'A' && c <= 'Z':
			if (!inWord || lower) && len(b) > start {
				b = append(b, '_')
			}
			b = append(b, c+('a'-'A'))
			inWord, lower = true, false
		case c >= '0' && c <= '9':
			if !inWord {
				if len(b) > start {
					b = append(b, '_')
				}
				lower = false
			}
			b = append(b, c)
			inWord = true
		default:
			inWord = false
		}
	}
	return b
}

// SchemaName turns a source name into a Postgres schema name (SPEC §2):
// ASCII letters lowercased, every byte outside [a-z0-9_] removed
// ("AutopilotHQ" → "autopilothq", "Customer.io" → "customerio"), a '_'
// prefix when the result starts with a digit or would be a name Postgres
// keeps for itself ("pg_" prefix, "information_schema"), then LimitIdent.
// Underscores are kept as they are (no folding). It returns "" when nothing
// is left.
//
// Only ASCII is lowercased: a non-ASCII letter is removed even where
// Unicode lowercases it to ASCII (the Kelvin sign K), so the result never
// depends on Unicode tables.
func SchemaName(source string) string {
	n := 0
	clean := true
	for i := 0; i < len(source); i++ {
		c := source[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
			n++
		case c >= 'A' && c <= 'Z':
			n++
			clean = false
		default:
			clean = false
		}
	}
	if n == 0 {
		return ""
	}
	name := source
	if !clean {
		b := make([]byte, 0, n)
		for i := 0; i < len(source); i++ {
			c := source[i]
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
				b = append(b, c)
			case c >= 'A' && c <= 'Z':
				b = append(b, c+('a'-'A'))
			}
		}
		name = string(b)
	}
	// CREATE SCHEMA refuses "pg_*" ("unacceptable schema name"), and
	// information_schema is the SQL-standard catalog: a source must never
	// load into either.
	if startsWithDigit(name) || strings.HasPrefix(name, "pg_") || name == "information_schema" {
		name = "_" + name
	}
	return LimitIdent(name)
}

// EventName returns the value of the `event` column for a raw track event
// name: Snake(event), without the prefixes and the length limit that only
// identifiers need ("101 Account Update" → "101_account_update"). It is ""
// when the name has no ASCII letter or digit.
func EventName(event string) string {
	return Snake(event)
}

// EventTable returns the table of a track event (SPEC §3, §6): Snake(event),
// a '_' prefix when that starts with a digit ("101 Account Update" →
// "_101_account_update") or equals one of the eight tables every source has
// (tracks, identifies, pages, screens, groups, aliases, users, accounts:
// "Users" → "_users"), then LimitIdent. It returns "" when the name
// snake-cases to nothing; such an event has no table.
//
// Reserved words are not prefixed here: SPEC §6 rule 2 covers property and
// trait names only, and table names are always quoted.
func EventTable(event string) string {
	n := Snake(event)
	if n == "" {
		return ""
	}
	if startsWithDigit(n) || isCallTable(n) {
		n = "_" + n
	}
	return LimitIdent(n)
}

// ColumnName names a property or trait column from its flattened key: the
// path segments already joined with "_" ("address_postalCode"). It applies
// Snake, then the rules of SPEC §6 in order: 1, a name starting with a digit
// gets a '_' prefix; 2, a reserved word (IsReserved) gets a '_' prefix
// ("user" → "_user", "tag" → "_tag"); 3, a name that is a fixed column of
// any table, or begins with "context_", gets a '_' prefix ("id" → "_id");
// 4, LimitIdent. At most one '_' is added: a prefixed name is neither a
// reserved word nor a fixed column.
//
// The fixed columns are the same for every table (id, received_at, uuid_ts,
// anonymous_id, user_id, sent_at, original_timestamp, timestamp, event,
// event_text, group_id, previous_id, context_*), so a property's column
// does not depend on the table it lands in. `name` and `category` are not
// prefixed: a page's top-level name/category share the column and win.
//
// ok is false when the key snake-cases to nothing ("名前"): the key makes no
// column and its value is a discard (SPEC §6 rule 5). Distinct keys may give
// one name ("firstName", "first_name"; "id", "_id"); SPEC §6 rule 6 settles
// that, not the namer.
func ColumnName(key string) (name string, ok bool) {
	n := Snake(key)
	if n == "" {
		return "", false
	}
	if startsWithDigit(n) || IsReserved(n) || isFixedColumn(n) {
		n = "_" + n
	}
	return LimitIdent(n), true
}

// ContextColumn names a context column from its flattened path without the
// "context." prefix, segments joined with "_" ("app_version" for
// context.app.version, "userAgent" → "context_user_agent"): "context_" +
// Snake(path), then LimitIdent. ok is false when the path snake-cases to
// nothing; the value is then a discard.
func ContextColumn(path string) (name string, ok bool) {
	n := Snake(path)
	if n == "" {
		return "", false
	}
	return LimitIdent("context_" + n), true
}

// LimitIdent applies SPEC §6 rule 4: a name of at most MaxIdentLen (63)
// bytes is returned unchanged; a longer one is cut to its first 54 bytes,
// followed by '_' and the 8 lowercase hex digits of the 32-bit FNV-1a hash
// of the whole name, 63 bytes in all. Two long names that share their
// first 54 bytes thus get different identifiers (unless their hashes
// collide), and the same name always gets the same one. The cut is
// byte-wise: name is expected to be ASCII, as every name of this package
// is. The cut may end in '_', giving "__" before the hash; the rule is kept
// literal so that the name stays predictable.
func LimitIdent(name string) string {
	if len(name) <= MaxIdentLen {
		return name
	}
	h := fnv32a(name)
	var b [MaxIdentLen]byte
	copy(b[:], name[:identCut])
	b[identCut] = '_'
	const hexDigits = "0123456789abcdef"
	for i := MaxIdentLen - 1; i > identCut; i-- {
		b[i] = hexDigits[h&0xf]
		h >>= 4
	}
	return string(b[:])
}

// fnv32a is the 32-bit FNV-1a hash (as hash/fnv's New32a), inlined to
// avoid an allocation per call.
func fnv32a(s string) uint32 {
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= prime32
	}
	return h
}

// IsEventTable reports whether n names a track event's own table: any
// table but the eight of SPEC §3.
func IsEventTable(n string) bool { return !isCallTable(n) }

// isCallTable reports whether n is one of the eight tables of SPEC §3.
func isCallTable(n string) bool {
	switch n {
	case "tracks", "identifies", "pages", "screens", "groups", "aliases", "users", "accounts":
		return true
	}
	return false
}

// isFixedColumn reports whether n is a fixed column of some table (SPEC §4)
// or begins with "context_" (SPEC §6 rule 3).
func isFixedColumn(n string) bool {
	switch n {
	case "id", "received_at", "uuid_ts", "anonymous_id", "user_id", "sent_at",
		"original_timestamp", "timestamp", "event", "event_text", "group_id",
		"previous_id":
		return true
	}
	return strings.HasPrefix(n, "context_")
}

func startsWithDigit(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' }
