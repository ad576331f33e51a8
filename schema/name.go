package schema

// Placeholder until the namer lands; see name_test.go.

func SchemaName(source string) string { return source }
