// Package pgbin finds the installed Postgres server binaries (initdb,
// pg_ctl) for `segwarehouse dev` and for tests that run a cluster of their
// own.
package pgbin

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
)

// Dir returns a directory holding initdb and pg_ctl: the one on PATH
// (links resolved), else the newest /usr/lib/postgresql/*/bin.
func Dir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if _, err := os.Stat(filepath.Join(filepath.Dir(real), "pg_ctl")); err == nil {
				return filepath.Dir(real), nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no Postgres binaries (initdb, pg_ctl) were found")
}
