// Package pgtest gives each test its own throwaway Postgres database.
//
// The admin server comes from SEGWH_TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable); its user
// must be allowed to CREATE DATABASE. A test that needs Postgres fails,
// never skips, when the server cannot be reached: a skipped test would hide
// that the sink went untested.
//
//	dsn := pgtest.NewDB(t)
//	rows := pgtest.Query(t, dsn, `SELECT id FROM s.t ORDER BY id`)
package pgtest
