// Package secret holds String, a string type for credentials (a database
// URL, a password) that redacts itself everywhere it might be printed: fmt
// (%v, %s, %q, %#v), encoding/json, encoding.TextMarshaler and log/slog.
// Only Reveal returns the value, so that every use of the real value is a
// deliberate, greppable call.
//
// envconfig decodes a String like any string (its kind is string).
//
// The package imports only the standard library.
package secret
