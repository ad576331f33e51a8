package secret

import (
	"encoding/json"
	"log/slog"
	"strings"
)

// Redacted is what a String prints when it is not a connection string.
const Redacted = "[redacted]"

// mask replaces a password inside a connection string. It is the same mask
// net/url's URL.Redacted uses.
const mask = "xxxxx"

// String is a secret. The zero value is the empty secret.
type String string

// Reveal returns the secret itself. Never log its result.
func (s String) Reveal() string { return string(s) }

// String returns a printable form: a connection string (a URL with a scheme,
// or a key=value DSN) with its password masked, so an operator can still
// see the host, user and database; anything else as "[redacted]"; the empty
// secret as "".
func (s String) String() string {
	v := string(s)
	switch {
	case v == "":
		return ""
	case looksLikeDSN(v):
		return RedactURL(v)
	}
	return Redacted
}

// GoString makes %#v redact too.
func (s String) GoString() string { return "secret.String(" + quote(s.String()) + ")" }

// LogValue makes log/slog print the redacted form.
func (s String) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText makes encoders that use encoding.TextMarshaler (yaml,
// map keys, slog's text handler) print the redacted form.
func (s String) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalJSON makes encoding/json print the redacted form.
func (s String) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// looksLikeDSN reports whether v is a URL with a scheme or a libpq
// key=value connection string, i.e. something whose only secret part is a
// password that RedactURL masks.
func looksLikeDSN(v string) bool {
	if i := strings.Index(v, "://"); i > 0 && isScheme(v[:i]) {
		return true
	}
	for _, k := range []string{"host=", "hostaddr=", "dbname=", "user=", "password=", "port=", "sslmode="} {
		if strings.HasPrefix(v, k) || strings.Contains(v, " "+k) {
			return true
		}
	}
	return false
}

func isScheme(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// RedactURL masks every password in s with "xxxxx". s may be a
// connection URL ("postgres://user:pw@host/db?password=pw"), a libpq
// key=value DSN ("host=h password='p w' user=u"), or any text that embeds
// them (an error message); everything else in s is kept, so the result
// still names the host, user and database.
func RedactURL(s string) string {
	s = redactUserinfo(s)
	return redactKeyValue(s)
}

// redactUserinfo masks the password of every "scheme://user:password@host"
// in s. The userinfo ends at the last '@' before the host's end ('/', '?',
// '#' or white space), so an unescaped '@' in a password is masked too.
func redactUserinfo(s string) string {
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, "://")
		if i < 0 {
			break
		}
		start := i + 3
		end := start
		for end < len(rest) && !strings.ContainsRune("/?#\t\n\r `'\"", rune(rest[end])) && rest[end] != ' ' {
			end++
		}
		authority := rest[start:end]
		at := strings.LastIndexByte(authority, '@')
		if at < 0 {
			b.WriteString(rest[:end])
			rest = rest[end:]
			continue
		}
		userinfo := authority[:at]
		colon := strings.IndexByte(userinfo, ':')
		if colon < 0 {
			b.WriteString(rest[:end])
			rest = rest[end:]
			continue
		}
		b.WriteString(rest[:start])
		b.WriteString(userinfo[:colon+1])
		b.WriteString(mask)
		b.WriteString(authority[at:])
		rest = rest[end:]
	}
	b.WriteString(rest)
	return b.String()
}

// redactKeyValue masks the value of every "password=..." in s: a libpq
// key=value pair (value up to white space, or a single-quoted value with
// backslash escapes), or a URL query parameter (value up to '&', '#' or
// white space). The key is matched case-insensitively and may be spelled
// with spaces around '=' as libpq allows.
func redactKeyValue(s string) string {
	const key = "password"
	lower := strings.ToLower(s)
	var b strings.Builder
	pos := 0
	for {
		i := strings.Index(lower[pos:], key)
		if i < 0 {
			break
		}
		i += pos
		// Must be a whole key: preceded by start, space, '?', '&', ';'.
		if i > 0 && !strings.ContainsRune(" \t\n?&;,(`'\"", rune(s[i-1])) {
			b.WriteString(s[pos : i+len(key)])
			pos = i + len(key)
			continue
		}
		j := i + len(key)
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		if j >= len(s) || s[j] != '=' {
			b.WriteString(s[pos : i+len(key)])
			pos = i + len(key)
			continue
		}
		j++
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		query := i > 0 && (s[i-1] == '?' || s[i-1] == '&')
		k := j
		switch {
		case k < len(s) && s[k] == '\'':
			k++
			for k < len(s) && s[k] != '\'' {
				if s[k] == '\\' {
					k++
				}
				k++
			}
			if k < len(s) {
				k++ // closing quote
			}
		case query:
			for k < len(s) && !strings.ContainsRune("&# \t\n`'\"", rune(s[k])) {
				k++
			}
		default:
			for k < len(s) && !strings.ContainsRune(" \t\n`\"", rune(s[k])) {
				k++
			}
		}
		if k > len(s) {
			k = len(s)
		}
		b.WriteString(s[pos:j])
		b.WriteString(mask)
		pos = k
	}
	b.WriteString(s[pos:])
	return b.String()
}
