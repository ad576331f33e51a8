package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/segwarehouse/segwarehouse/consumer"
	"github.com/segwarehouse/segwarehouse/schema"
	"github.com/segwarehouse/segwarehouse/sink"
)

// appConfig is the process's own configuration (prefix SEGWH_).
type appConfig struct {
	// HTTPAddr is where /healthz, /readyz and /metrics listen. Default :9090.
	HTTPAddr string `envconfig:"HTTP_ADDR" default:":9090" desc:"listen address of /healthz, /readyz and /metrics; empty turns them off"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	// LogFormat is text or json. Default text.
	LogFormat string `envconfig:"LOG_FORMAT" default:"text" desc:"text or json"`
	// MemoryLimitMiB is the Go runtime's soft memory limit in MiB, used
	// when GOMEMLIMIT is not set: the garbage collector works harder as the
	// heap nears it instead of letting garbage double the footprint. 0 turns
	// it off. Default 224.
	MemoryLimitMiB int64 `envconfig:"MEMORY_LIMIT_MIB" default:"224" desc:"soft memory limit of the Go runtime, MiB, when GOMEMLIMIT is unset; 0: none"`
	// Pprof serves Go's profiles under /debug/pprof on HTTPAddr. Default
	// false: the port also serves /metrics, which may be reachable by more
	// people than should read heap contents.
	Pprof bool `envconfig:"PPROF" default:"false" desc:"serve /debug/pprof on SEGWH_HTTP_ADDR (profiles hold heap contents: keep off in production)"`
	// ProgressEvery prints a progress line this often (0: never).
	// Default 0 for run, 5s for dev.
	ProgressEvery time.Duration `envconfig:"PROGRESS_EVERY" desc:"print a progress line this often; 0 turns it off (dev: 5s)"`
}

func (c *appConfig) Validate() error {
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("SEGWH_LOG_FORMAT must be text or json, got %q", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error", "DEBUG", "INFO", "WARN", "ERROR":
	default:
		return fmt.Errorf("SEGWH_LOG_LEVEL must be debug, info, warn or error, got %q", c.LogLevel)
	}
	return nil
}

// config is everything the binary reads from the environment.
type config struct {
	App    appConfig
	Schema schema.Config
	Kafka  consumer.Config
	Sink   sink.Config
}

const envPrefix = "SEGWH"

var requiredRE = regexp.MustCompile(`required key (\S+) missing value`)

// parts lists the sections in the order the usage table shows them.
func (c *config) parts() []any { return []any{&c.App, &c.Kafka, &c.Sink, &c.Schema} }

// loadConfig reads and validates the environment. Errors wrap errUsage.
func loadConfig() (*config, error) {
	var c config
	var errs []error
	for _, p := range c.parts() {
		if err := envconfig.Process(envPrefix, p); err != nil {
			// envconfig names a missing variable without its prefix.
			errs = append(errs, errors.New(requiredRE.ReplaceAllString(err.Error(), envPrefix+"_$1 is required")))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return &c, nil
}

func (c *config) validate() error {
	return errors.Join(c.App.Validate(), c.Kafka.Validate(), c.Sink.Validate(), c.Schema.Validate())
}

const usageFormat = `{{range .}}{{usage_key .}}	{{usage_type .}}	{{usage_default .}}	{{usage_description .}}
{{end}}`

// printUsage prints every variable, its type, default and meaning.
func printUsage(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tTYPE\tDEFAULT\tMEANING")
	var c config
	for _, p := range append(c.parts(), &devConfig{}) {
		_ = envconfig.Usagef(envPrefix, p, tw, usageFormat)
	}
	tw.Flush()
}

// cmdConfig prints the configuration run would use, as JSON. Secrets are
// secret.String values, which marshal redacted.
func cmdConfig(w io.Writer) error {
	c, err := loadConfig()
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(c)
}
