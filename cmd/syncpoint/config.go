package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/httpapi"
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
	NodeID            *string             `yaml:"node_id"`
	Cluster           *string             `yaml:"cluster"`
	TLSCert           *string             `yaml:"tls_cert"`
	TLSKey            *string             `yaml:"tls_key"`
	PlainHTTP         *bool               `yaml:"plain_http"`
	LogLevel          *string             `yaml:"log_level"`
	TokenPublicKey    *string             `yaml:"token_public_key"`
	RateLimit         *float64            `yaml:"rate_limit"`
	RateBurst         *int                `yaml:"rate_burst"`
	MaxBodyBytes      *int64              `yaml:"max_body_bytes"`
	HeapFloorBytes    *int64              `yaml:"heap_floor_bytes"`
	MaxTargets        *int                `yaml:"max_targets"`
	BodyTimeout       *syncpoint.Duration `yaml:"body_timeout"`
	SweepInterval     *syncpoint.Duration `yaml:"sweep_interval"`
	ShutdownTimeout   *syncpoint.Duration `yaml:"shutdown_timeout"`
	HeartbeatInterval *syncpoint.Duration `yaml:"heartbeat_interval"`
	SendQueue         *int                `yaml:"send_queue"`
	MaxFrameBytes     *int                `yaml:"max_frame_bytes"`
	AllowedOrigins    []string            `yaml:"allowed_origins"`
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

// lineError is a problem at a line of the file; ParseConfig names the file.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return "line " + strconv.Itoa(e.line) + ": " + e.msg }

func errorAt(n *yaml.Node, format string, args ...any) error {
	return &lineError{line: n.Line, msg: fmt.Sprintf(format, args...)}
}

// checkKnownFields refuses mapping keys that t (a struct, or a pointer to
// one) does not have, at any depth: Node.Decode cannot do it itself. where
// names the mapping for the message, such as bizzes[0].webhook; "" is the
// top level. yaml.Node fields are left to their own check.
func checkKnownFields(n *yaml.Node, t reflect.Type, where string) error {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 8; i++ {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[yaml.Node]() || n.Kind != yaml.MappingNode {
		return nil // a type mismatch is left to Decode, which names the line
	}
	if _, ok := reflect.New(t).Interface().(interface{ UnmarshalText([]byte) error }); ok {
		return nil
	}
	fields := yamlFields(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" {
			// <<: a mapping (or a list of them) whose keys are merged in.
			merged := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				merged = v.Content
			}
			for _, m := range merged {
				if err := checkKnownFields(m, t, where); err != nil {
					return err
				}
			}
			continue
		}
		ft, ok := fields[k.Value]
		if !ok {
			names := slices.Sorted(maps.Keys(fields))
			in, takes := "in "+where, "a "+lastPart(where)+" takes "
			if where == "" {
				in, takes = "at the top level", "the top level takes "
			}
			return errorAt(k, "unknown key %q %s; %s%s", k.Value, in, takes, strings.Join(names, ", "))
		}
		inner := k.Value
		if where != "" {
			inner = where + "." + k.Value
		}
		if err := checkKnownFields(v, ft, inner); err != nil {
			return err
		}
	}
	return nil
}

// lastPart names what a path such as bizzes[0].webhook ends in: webhook;
// bizzes[0] is a biz.
func lastPart(where string) string {
	if i := strings.LastIndexByte(where, '.'); i >= 0 {
		return where[i+1:]
	}
	if strings.HasPrefix(where, "bizzes[") {
		return "biz"
	}
	return where
}

// ParseConfig parses a config file. name is used in error messages, which
// give the line of the problem. Unknown keys, duplicate biz names and
// invalid bizzes are errors.
func ParseConfig(name string, data []byte) (*Config, error) {
	c, err := parseConfig(data)
	if err != nil {
		var le *lineError
		if errors.As(err, &le) {
			return nil, fmt.Errorf("%s:%d: %s", name, le.line, le.msg)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

func parseConfig(data []byte) (*Config, error) {
	if len(data) > MaxConfigBytes {
		return nil, fmt.Errorf("%d bytes; a config file may have at most %d", len(data), MaxConfigBytes)
	}
	var c Config
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return &c, nil // an empty file configures nothing
	case err != nil:
		return nil, yamlError(err, "")
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("want one YAML document; found more")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
			return &c, nil // only comments
		}
		return nil, errorAt(root, "want a mapping of settings and bizzes")
	}
	if err := checkKnownFields(root, reflect.TypeFor[fileConfig](), ""); err != nil {
		return nil, err
	}
	if err := root.Decode(&c.file); err != nil {
		return nil, yamlError(err, "")
	}
	seen := make(map[string]int)
	for i := range c.file.Bizzes {
		n := &c.file.Bizzes[i]
		where := fmt.Sprintf("bizzes[%d]", i)
		b, err := parseBiz(n, where)
		if err != nil {
			return nil, err
		}
		if line, dup := seen[b.Name]; dup {
			return nil, errorAt(n, "%s: biz %q is already defined at line %d", where, b.Name, line)
		}
		seen[b.Name] = n.Line
		c.Bizzes = append(c.Bizzes, b)
	}
	if err := c.checkSettings(root); err != nil {
		return nil, err
	}
	return &c, nil
}

// parseBiz decodes one biz over syncpoint.NewBiz's defaults and validates it.
func parseBiz(n *yaml.Node, where string) (syncpoint.Biz, error) {
	if n.Kind != yaml.MappingNode {
		return syncpoint.Biz{}, errorAt(n, "%s: want a mapping with name, target and settings", where)
	}
	if err := checkKnownFields(n, reflect.TypeFor[syncpoint.Biz](), where); err != nil {
		return syncpoint.Biz{}, err
	}
	b := syncpoint.NewBiz("", "")
	if err := n.Decode(&b); err != nil {
		return syncpoint.Biz{}, yamlError(err, where)
	}
	if err := b.Validate(); err != nil {
		return syncpoint.Biz{}, errorAt(n, "%s: %s", where, syncpoint.Message(err))
	}
	return b, nil
}

// checkSettings checks the server settings' values, naming the line of a
// bad one.
func (c *Config) checkSettings(root *yaml.Node) error {
	f := &c.file
	bad := func(key, msg string) error {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == key {
				return errorAt(root.Content[i], "%s %s", key, msg)
			}
		}
		return fmt.Errorf("%s %s", key, msg)
	}
	switch {
	case f.RateLimit != nil && (*f.RateLimit < 0 || math.IsNaN(*f.RateLimit) || math.IsInf(*f.RateLimit, 0)):
		return bad("rate_limit", "must be a finite number, not negative")
	case f.RateBurst != nil && *f.RateBurst < 0:
		return bad("rate_burst", "must not be negative")
	case f.MaxBodyBytes != nil && *f.MaxBodyBytes < 0:
		return bad("max_body_bytes", "must not be negative")
	case f.HeapFloorBytes != nil && *f.HeapFloorBytes < 0:
		return bad("heap_floor_bytes", "must not be negative")
	case f.MaxTargets != nil && *f.MaxTargets < 0:
		return bad("max_targets", "must not be negative")
	case f.HeartbeatInterval != nil && *f.HeartbeatInterval <= 0:
		return bad("heartbeat_interval", "must be positive")
	case f.SendQueue != nil && *f.SendQueue <= 0:
		return bad("send_queue", "must be positive")
	case f.MaxFrameBytes != nil && *f.MaxFrameBytes <= 0:
		return bad("max_frame_bytes", "must be positive")
	case f.BodyTimeout != nil && *f.BodyTimeout <= 0:
		return bad("body_timeout", "must be positive")
	case f.SweepInterval != nil && *f.SweepInterval <= 0:
		return bad("sweep_interval", "must be positive")
	case f.ShutdownTimeout != nil && *f.ShutdownTimeout <= 0:
		return bad("shutdown_timeout", "must be positive")
	}
	if err := httpapi.CheckOrigins(f.AllowedOrigins); err != nil {
		return bad("allowed_origins", strings.TrimPrefix(err.Error(), "origin pattern "))
	}
	if f.LogLevel != nil {
		if _, err := parseLogLevel(*f.LogLevel); err != nil {
			return bad("log_level", strings.TrimPrefix(err.Error(), "log level "))
		}
	}
	return nil
}

// typeMismatch is how yaml.v3 words a value of the wrong type.
var typeMismatch = regexp.MustCompile("^line ([0-9]+): cannot unmarshal !!([a-z]+) `(.*)` into (.+)$")

// yamlError says a yaml error in our words, with the line: yaml.v3 names
// Go types ("into main.fileConfig"), which mean nothing to whoever edits
// the file. where, when set, names the biz.
func yamlError(err error, where string) error {
	prefix := ""
	if where != "" {
		prefix = where + ": "
	}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if m := typeMismatch.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			return &lineError{line: line, msg: fmt.Sprintf("%swant %s, not the %s %q", prefix, yamlWant(m[4]), yamlKind(m[2]), m[3])}
		}
		if line, rest, ok := cutLine(msg); ok {
			return &lineError{line: line, msg: prefix + rest}
		}
		return errors.New(prefix + msg)
	}
	var se *syncpoint.Error
	if errors.As(err, &se) {
		return errors.New(prefix + se.Message)
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if line, rest, ok := cutLine(msg); ok {
		return &lineError{line: line, msg: prefix + rest}
	}
	return errors.New(prefix + msg)
}

// cutLine splits yaml.v3's "line N: message".
func cutLine(msg string) (int, string, bool) {
	head, rest, ok := strings.Cut(msg, ": ")
	n, err := strconv.Atoi(strings.TrimPrefix(head, "line "))
	if !ok || !strings.HasPrefix(head, "line ") || err != nil {
		return 0, "", false
	}
	return n, rest, true
}

// yamlWant says what a Go type takes, in YAML's words.
func yamlWant(goType string) string {
	switch {
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case goType == "string", strings.HasSuffix(goType, "Duration"), strings.HasSuffix(goType, "TargetKind"), strings.HasSuffix(goType, "ConflictPolicy"):
		return "a string"
	}
	return "a mapping"
}

// yamlKind names a YAML tag: !!str is a string.
func yamlKind(tag string) string {
	switch tag {
	case "str":
		return "string"
	case "int", "float":
		return "number"
	case "bool":
		return "boolean"
	case "seq":
		return "list"
	case "map":
		return "mapping"
	}
	return tag
}
