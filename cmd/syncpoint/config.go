package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/syncpoint/syncpoint"
)

// MaxConfigBytes bounds a config file; a real one is a few kilobytes.
const MaxConfigBytes = 4 << 20

// fileConfig is syncpoint.yaml: the bizzes and, optionally, the settings of
// `syncpoint serve`, which its flags override. Pointers tell "absent" from
// "zero" so that only settings the file gives are applied.
type fileConfig struct {
	Data              *string             `yaml:"data"`
	Listen            *string             `yaml:"listen"`
	TCPListen         *string             `yaml:"tcp_listen"`
	Store             *string             `yaml:"store"`
	NATS              *string             `yaml:"nats"`
	TLSCert           *string             `yaml:"tls_cert"`
	TLSKey            *string             `yaml:"tls_key"`
	LogLevel          *string             `yaml:"log_level"`
	TokenPublicKey    *string             `yaml:"token_public_key"`
	RateLimit         *float64            `yaml:"rate_limit"`
	RateBurst         *int                `yaml:"rate_burst"`
	MaxBodyBytes      *int64              `yaml:"max_body_bytes"`
	MaxTargets        *int                `yaml:"max_targets"`
	SweepInterval     *syncpoint.Duration `yaml:"sweep_interval"`
	ShutdownTimeout   *syncpoint.Duration `yaml:"shutdown_timeout"`
	HeartbeatInterval *syncpoint.Duration `yaml:"heartbeat_interval"`
	SendQueue         *int                `yaml:"send_queue"`
	MaxFrameBytes     *int                `yaml:"max_frame_bytes"`
	Bizzes            []yaml.Node         `yaml:"bizzes"`
}

// Config is a parsed config file.
type Config struct {
	file   fileConfig
	Bizzes []syncpoint.Biz
}

// yamlFields returns the keys a struct type takes, from its yaml tags.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type)
	for i := range t.NumField() {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name != "" && name != "-" && f.IsExported() {
			out[name] = f.Type
		}
	}
	return out
}

// checkKnownFields refuses mapping keys that t (a struct, or a pointer to
// one) does not have, at any depth: Node.Decode cannot do it itself.
func checkKnownFields(n *yaml.Node, t reflect.Type, what string) error {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 8; i++ {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || n.Kind != yaml.MappingNode {
		return nil // a type mismatch is left to Decode, which names the line
	}
	if _, ok := reflect.New(t).Interface().(interface{ UnmarshalText([]byte) error }); ok {
		return nil
	}
	fields := yamlFields(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ft, ok := fields[k.Value]
		if !ok {
			names := make([]string, 0, len(fields))
			for name := range fields {
				names = append(names, name)
			}
			slices.Sort(names)
			return fmt.Errorf("line %d: unknown field %q; %s has %s", k.Line, k.Value, what, strings.Join(names, ", "))
		}
		if err := checkKnownFields(v, ft, k.Value); err != nil {
			return err
		}
	}
	return nil
}

// ParseConfig parses a config file. name is used in error messages, which
// give the line of the problem. Unknown fields, duplicate biz names and
// invalid bizzes are errors.
func ParseConfig(name string, data []byte) (*Config, error) {
	if len(data) > MaxConfigBytes {
		return nil, fmt.Errorf("%s: %d bytes; a config file may have at most %d", name, len(data), MaxConfigBytes)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	switch err := dec.Decode(&c.file); {
	case errors.Is(err, io.EOF):
		return &c, nil // an empty file configures nothing
	case err != nil:
		return nil, fmt.Errorf("%s: %s", name, yamlMessage(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: want one YAML document; found more", name)
	}
	seen := make(map[string]int)
	for i := range c.file.Bizzes {
		n := &c.file.Bizzes[i]
		b, err := parseBiz(n)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: bizzes[%d]: %s", name, n.Line, i, err)
		}
		if line, dup := seen[b.Name]; dup {
			return nil, fmt.Errorf("%s:%d: bizzes[%d]: biz %q is already defined at line %d", name, n.Line, i, b.Name, line)
		}
		seen[b.Name] = n.Line
		c.Bizzes = append(c.Bizzes, b)
	}
	if err := c.checkSettings(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &c, nil
}

// parseBiz decodes one biz over syncpoint.NewBiz's defaults and validates it.
func parseBiz(n *yaml.Node) (syncpoint.Biz, error) {
	if n.Kind != yaml.MappingNode {
		return syncpoint.Biz{}, errors.New("want a mapping with name, target and settings")
	}
	if err := checkKnownFields(n, reflect.TypeFor[syncpoint.Biz](), "a biz"); err != nil {
		return syncpoint.Biz{}, err
	}
	b := syncpoint.NewBiz("", "")
	if err := n.Decode(&b); err != nil {
		return syncpoint.Biz{}, errors.New(yamlMessage(err))
	}
	if err := b.Validate(); err != nil {
		return syncpoint.Biz{}, errors.New(syncpoint.Message(err))
	}
	return b, nil
}

func (c *Config) checkSettings() error {
	f := &c.file
	if f.RateLimit != nil && (*f.RateLimit < 0 || math.IsNaN(*f.RateLimit) || math.IsInf(*f.RateLimit, 0)) {
		return errors.New("rate_limit must be a finite number, not negative")
	}
	if f.RateBurst != nil && *f.RateBurst < 0 {
		return errors.New("rate_burst must not be negative")
	}
	if f.MaxBodyBytes != nil && *f.MaxBodyBytes < 0 {
		return errors.New("max_body_bytes must not be negative")
	}
	if f.MaxTargets != nil && *f.MaxTargets < 0 {
		return errors.New("max_targets must not be negative")
	}
	if f.HeartbeatInterval != nil && *f.HeartbeatInterval <= 0 {
		return errors.New("heartbeat_interval must be positive")
	}
	if (f.SendQueue != nil && *f.SendQueue <= 0) || (f.MaxFrameBytes != nil && *f.MaxFrameBytes <= 0) {
		return errors.New("send_queue and max_frame_bytes must be positive")
	}
	if f.SweepInterval != nil && *f.SweepInterval <= 0 {
		return errors.New("sweep_interval must be positive")
	}
	if f.ShutdownTimeout != nil && *f.ShutdownTimeout <= 0 {
		return errors.New("shutdown_timeout must be positive")
	}
	if f.LogLevel != nil {
		if _, err := parseLogLevel(*f.LogLevel); err != nil {
			return err
		}
	}
	return nil
}

// yamlMessage flattens a yaml error into one line: yaml.v3 already says
// "line N: ..." for each problem.
func yamlMessage(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return strings.Join(te.Errors, "; ")
	}
	var se *syncpoint.Error
	if errors.As(err, &se) {
		return se.Message
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}
