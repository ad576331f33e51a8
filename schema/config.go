package schema

import (
	"errors"
	"fmt"
)

// Config is the data-model configuration (environment prefix SEGWH_).
type Config struct {
	// WarehouseID is this warehouse's id, matched against a message's
	// integrations.Warehouses.warehouseIds. Default: empty (a message that
	// lists warehouse ids is then not loaded).
	WarehouseID string `envconfig:"WAREHOUSE_ID" desc:"this warehouse's id, matched against integrations.Warehouses.warehouseIds"`
	// MaxRecordBytes is the largest record value accepted, in bytes;
	// larger records are rejected. Default 524288 (512 KiB).
	MaxRecordBytes int `envconfig:"MAX_RECORD_BYTES" default:"524288" desc:"largest record value accepted, bytes; larger ones are rejected"`
	// SourceHeader names the Kafka header whose value names a record's
	// source. Default: none.
	SourceHeader string `envconfig:"SOURCE_HEADER" desc:"Kafka header naming a record's source (checked first)"`
	// WriteKeys maps a message's writeKey to a source name
	// ("key1:web,key2:ios"). Default: none.
	WriteKeys map[string]string `envconfig:"WRITE_KEYS" desc:"writeKey:source pairs, comma-separated"`
	// TopicSources maps a topic to a source name ("events-web:web").
	// Default: none; the topic name is the source.
	TopicSources map[string]string `envconfig:"TOPIC_SOURCES" desc:"topic:source pairs, comma-separated; default: the topic name is the source"`
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxRecordBytes <= 0 {
		errs = append(errs, fmt.Errorf("SEGWH_MAX_RECORD_BYTES must be positive, got %d", c.MaxRecordBytes))
	}
	for k, v := range c.WriteKeys {
		if SchemaName(v) == "" {
			errs = append(errs, fmt.Errorf("SEGWH_WRITE_KEYS: source %q for write key %q has no letters or digits", v, k))
		}
	}
	for k, v := range c.TopicSources {
		if SchemaName(v) == "" {
			errs = append(errs, fmt.Errorf("SEGWH_TOPIC_SOURCES: source %q for topic %q has no letters or digits", v, k))
		}
	}
	return errors.Join(errs...)
}
