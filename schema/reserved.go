package schema

// IsReserved reports whether name, a snake-cased identifier, is a reserved
// word that SPEC §6 rule 2 prefixes with '_' when a property or trait would
// use it as a column name. The match is exact and case-sensitive: name is
// expected to be lowercase, as Snake's output is.
//
// The set is the union of:
//
//   - Amazon Redshift's reserved words, which Segment applies to every
//     warehouse (https://docs.aws.amazon.com/redshift/latest/dg/r_pg_keywords.html,
//     156 words). Older editions of that page also listed LANGUAGE and TYPE;
//     they are left out on purpose because SPEC §6 requires `language` and
//     `type` (like `name`, `category` and `version`, none of which is on
//     either list) to stay unprefixed;
//   - PostgreSQL's reserved key words, both "reserved" and "reserved (can be
//     function or type)" in the SQL Key Words appendix (pg_get_keywords()
//     catcode R and T on PostgreSQL 15, plus system_user, reserved since
//     PostgreSQL 16), where not already in Redshift's list. The "non-reserved
//     (cannot be function or type)" words such as `time`, `position` or
//     `values` are legal column names and stay;
//   - PostgreSQL's system column names (tableoid, xmin, cmin, xmax, cmax,
//     ctid): a user column with one of these names is an error even when
//     quoted ("column name conflicts with a system column name"), so a
//     property named ctid must not reach DDL unprefixed. The SPEC does not
//     list them; they are here so that no property can fail a load. (oid is
//     already a Redshift word.)
//
// Quoting makes every other word safe in Postgres; the prefix keeps the
// column names identical to Segment's.
func IsReserved(name string) bool {
	switch name {
	// Amazon Redshift reserved words.
	case
		"aes128", "aes256", "all", "allowoverwrite", "analyse", "analyze", "and",
		"any", "array", "as", "asc", "authorization", "az64", "backup", "between",
		"binary", "blanksasnull", "both", "bytedict", "bzip2", "case", "cast",
		"check", "collate", "column", "constraint", "create", "credentials",
		"cross", "current_date", "current_time", "current_timestamp",
		"current_user", "current_user_id", "default", "deferrable", "deflate",
		"defrag", "delta", "delta32k", "desc", "disable", "distinct", "do", "else",
		"emptyasnull", "enable", "encode", "encrypt", "encryption", "end",
		"except", "explicit", "false", "for", "foreign", "freeze", "from", "full",
		"globaldict256", "globaldict64k", "grant", "group", "gzip", "having",
		"identity", "ignore", "ilike", "in", "initially", "inner", "intersect",
		"interval", "into", "is", "isnull", "join", "leading", "left", "like",
		"limit", "localtime", "localtimestamp", "lun", "luns", "lzo", "lzop",
		"minus", "mostly16", "mostly32", "mostly8", "natural", "new", "not",
		"notnull", "null", "nulls", "off", "offline", "offset", "oid", "old", "on",
		"only", "open", "or", "order", "outer", "overlaps", "parallel",
		"partition", "percent", "permissions", "pivot", "placing", "primary",
		"raw", "readratio", "recover", "references", "rejectlog", "resort",
		"respect", "restore", "right", "select", "session_user", "similar",
		"snapshot", "some", "sysdate", "system", "table", "tag", "tdes", "text255",
		"text32k", "then", "timestamp", "to", "top", "trailing", "true",
		"truncatecolumns", "union", "unique", "unnest", "unpivot", "user", "using",
		"verbose", "wallet", "when", "where", "with", "without":
		return true
	// PostgreSQL reserved key words not in Redshift's list.
	case
		"asymmetric", "collation", "concurrently", "current_catalog",
		"current_role", "current_schema", "fetch", "lateral", "returning",
		"symmetric", "system_user", "tablesample", "variadic", "window":
		return true
	// PostgreSQL system columns.
	case "tableoid", "xmin", "cmin", "xmax", "cmax", "ctid":
		return true
	}
	return false
}
