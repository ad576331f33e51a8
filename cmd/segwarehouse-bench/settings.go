package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// loaderKnobs are the loader settings that shape its throughput.
var loaderKnobs = []string{"SEGWH_FLUSH_ROWS", "SEGWH_FLUSH_BYTES", "SEGWH_FLUSH_INTERVAL", "SEGWH_FLUSH_QUIET", "SEGWH_WORKERS",
	"SEGWH_POLL_RECORDS", "SEGWH_DATABASE_MAX_CONNS", "GOMAXPROCS", "GOGC", "GOMEMLIMIT"}

// loaderSettings returns the loader's throughput settings as it will see
// them: the value in this process's environment, else the binary's
// default as `segwarehouse env` prints it.
func loaderSettings(bin string) []string {
	defaults := binaryDefaults(bin)
	var out []string
	for _, k := range loaderKnobs {
		v, set := os.LookupEnv(k)
		switch {
		case set:
			v += " (set)"
		case defaults[k] != "":
			v = defaults[k]
		case strings.HasPrefix(k, "SEGWH_"):
			v = "0 (default)"
		default:
			continue // a Go runtime variable left alone
		}
		out = append(out, k+"="+v)
	}
	return out
}

// binaryDefaults reads the defaults column of `bin env`: a tabwriter
// table whose header is "VARIABLE  TYPE  DEFAULT  MEANING".
func binaryDefaults(bin string) map[string]string {
	out, err := exec.Command(bin, "env").Output()
	if err != nil {
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	if !sc.Scan() {
		return nil
	}
	header := sc.Text()
	from, to := strings.Index(header, "DEFAULT"), strings.Index(header, "MEANING")
	if from < 0 || to < from {
		return nil
	}
	defaults := make(map[string]string)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < to {
			continue
		}
		if v := strings.TrimSpace(line[from:to]); v != "" {
			defaults[strings.Fields(line)[0]] = v
		}
	}
	return defaults
}

// binaryVersion returns what `bin version` prints.
func binaryVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "unknown version"
	}
	return strings.TrimSpace(string(out))
}

// machine describes the machine: cores, CPU model and memory.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
		}
	}
	return fmt.Sprintf("nproc %d, %s%s, %s/%s", runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH)
}

// loadAverage returns /proc/loadavg's 1-, 5- and 15-minute averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
