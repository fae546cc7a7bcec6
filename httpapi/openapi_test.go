package httpapi

import (
	"encoding"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/httpsync"
)

// deviceRoutes are the routes of the device surfaces that the server puts
// on the API's mux, so that the document is checked against them too.
func deviceRoutes() []Route {
	var out []Route
	for _, rt := range httpsync.New(httpsync.Config{}).Routes() {
		out = append(out, Route(rt))
	}
	// server/server.go mounts the event stream beside the API; sse imports
	// this package, so the route is named here rather than taken from it.
	out = append(out, Route{Method: "GET", Path: "/v1/events", Handle: func(http.ResponseWriter, *http.Request) error { return nil }})
	return out
}

// openAPIDoc is the part of docs/openapi.yaml the tests check.
type openAPIDoc struct {
	OpenAPI    string                          `yaml:"openapi"`
	Paths      map[string]map[string]yaml.Node `yaml:"paths"`
	Components map[string]map[string]yaml.Node `yaml:"components"`
}

var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}

func loadOpenAPI(t *testing.T) (openAPIDoc, []byte) {
	t.Helper()
	raw, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPIDoc
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parse openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	return doc, raw
}

// documented returns "METHOD /path" for every operation in the document.
func (doc openAPIDoc) documented() []string {
	var ops []string
	for path, item := range doc.Paths {
		for key := range item {
			if slices.Contains(httpMethods, key) {
				ops = append(ops, strings.ToUpper(key)+" "+path)
			}
		}
	}
	slices.Sort(ops)
	return ops
}

// TestOpenAPIMatchesRoutes checks that every route the mux serves is in
// docs/openapi.yaml and every documented operation reaches its own route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	documented := doc.documented()

	s := New(Config{APIKey: "k", DeviceRoutes: deviceRoutes()})
	mux := http.NewServeMux()
	s.Register(mux)
	var served []string
	for _, rt := range s.routes {
		served = append(served, rt.method+" "+rt.path)
	}
	for _, rt := range s.deviceRoutes {
		served = append(served, rt.Method+" "+rt.Path)
	}
	slices.Sort(served)
	for _, op := range served {
		if !slices.Contains(documented, op) {
			t.Errorf("route %s is served but not in docs/openapi.yaml", op)
		}
	}

	// Ask the mux itself which pattern each documented operation reaches,
	// with sample values in the path parameters.
	param := regexp.MustCompile(`\{[^}]+\}`)
	for _, op := range documented {
		method, path, _ := strings.Cut(op, " ")
		req := httptest.NewRequest(method, param.ReplaceAllString(path, "x1"), nil)
		_, pattern := mux.Handler(req)
		if pattern != op {
			t.Errorf("documented %s reaches the mux pattern %q, not its own route", op, pattern)
		}
	}
}

// TestOpenAPIRefsResolve checks that every $ref names a component that
// exists, and that each operation is documented as public exactly when its
// route needs no API key, and then documents its 401.
func TestOpenAPIRefsResolve(t *testing.T) {
	doc, raw := loadOpenAPI(t)
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		t.Fatal(err)
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "$ref" {
					ref := n.Content[i+1].Value
					parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
					if !strings.HasPrefix(ref, "#/components/") || len(parts) != 2 {
						t.Errorf("$ref %q: want #/components/<kind>/<name>", ref)
						continue
					}
					if _, ok := doc.Components[parts[0]][parts[1]]; !ok {
						t.Errorf("$ref %q names no component", ref)
					}
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)

	needsKey := map[string]bool{}
	for _, rt := range New(Config{APIKey: "k"}).routes {
		needsKey[rt.method+" "+rt.path] = rt.auth
	}
	device := map[string]bool{}
	for _, rt := range deviceRoutes() {
		device[rt.Method+" "+rt.Path] = true
	}
	// The API's own device route: reconcile by manifest checks a device
	// token, not the API key.
	device["POST /v1/sync/reconcile"] = true

	for path, item := range doc.Paths {
		for method, node := range item {
			if !slices.Contains(httpMethods, method) {
				continue
			}
			var op struct {
				Security  *[]map[string][]string `yaml:"security"`
				Responses map[string]yaml.Node   `yaml:"responses"`
			}
			if err := node.Decode(&op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			// Public here means needing no API key: a device route names
			// the device token's scheme instead, and checks it itself.
			public := op.Security != nil && !slices.ContainsFunc(*op.Security, func(m map[string][]string) bool {
				_, ok := m["apiKey"]
				return ok
			})
			if _, ok := op.Responses["401"]; !public && !ok {
				t.Errorf("%s %s needs the API key but documents no 401", method, path)
			}
			// A device route takes a device token; only the event stream,
			// for EventSource, may take it in the query instead.
			byToken := op.Security != nil && len(*op.Security) > 0 && !slices.ContainsFunc(*op.Security, func(m map[string][]string) bool {
				return len(m) != 1 || (m["deviceToken"] == nil && (m["accessTokenQuery"] == nil || path != "/v1/events"))
			})
			if dev := device[strings.ToUpper(method)+" "+path]; dev || byToken {
				if dev != byToken {
					t.Errorf("%s %s: documented with a device token = %v, but it is a device route = %v", method, path, byToken, dev)
				}
				continue
			}
			if needsKey[strings.ToUpper(method)+" "+path] == public {
				t.Errorf("%s %s: documented as public=%v, but the route's auth is %v", method, path, public, !public)
			}
		}
	}
}

// schema is the part of an OpenAPI schema object the field checks read.
type schema struct {
	Type       any               `yaml:"type"` // a name, or a list of names
	Ref        string            `yaml:"$ref"`
	Properties map[string]schema `yaml:"properties"`
	AllOf      []schema          `yaml:"allOf"`
	Required   []string          `yaml:"required"`
}

// resolve follows a $ref to its component.
func (doc openAPIDoc) resolve(t *testing.T, s schema) schema {
	t.Helper()
	for i := 0; s.Ref != "" && i < 8; i++ {
		name := strings.TrimPrefix(s.Ref, "#/components/schemas/")
		n, ok := doc.Components["schemas"][name]
		if !ok {
			t.Fatalf("$ref %s names no schema", s.Ref)
		}
		s = schema{}
		if err := n.Decode(&s); err != nil {
			t.Fatalf("schema %s: %v", name, err)
		}
	}
	return s
}

// properties returns a schema's properties, those of its allOf parts
// included.
func (doc openAPIDoc) properties(t *testing.T, s schema) map[string]schema {
	t.Helper()
	s = doc.resolve(t, s)
	out := make(map[string]schema)
	for _, part := range s.AllOf {
		maps.Copy(out, doc.properties(t, part))
	}
	maps.Copy(out, s.Properties)
	return out
}

// jsonFields returns the JSON names of the fields encoding/json reads and
// writes for struct type rt, with embedded structs' fields promoted unless
// a shallower field has the name.
func jsonFields(rt reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type)
	var embedded []reflect.Type
	for i := range rt.NumField() {
		f := rt.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			embedded = append(embedded, f.Type)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	for _, et := range embedded {
		for name, ft := range jsonFields(et) {
			if _, shadowed := out[name]; !shadowed {
				out[name] = ft
			}
		}
	}
	return out
}

// jsonType is the JSON type encoding/json gives a Go type: "" for any
// value (raw JSON).
func jsonType(rt reflect.Type) string {
	switch {
	case rt == reflect.TypeFor[json.RawMessage]():
		return ""
	case rt == reflect.TypeFor[time.Time](),
		rt.Implements(reflect.TypeFor[encoding.TextMarshaler]()),
		reflect.PointerTo(rt).Implements(reflect.TypeFor[encoding.TextMarshaler]()):
		return "string"
	}
	switch rt.Kind() {
	case reflect.Pointer:
		return jsonType(rt.Elem())
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	}
	return "object"
}

// TestOpenAPIMatchesTypes checks each request and answer schema of
// docs/openapi.yaml against the Go type the server decodes into or encodes
// from: the same field names both ways, of the same JSON types.
func TestOpenAPIMatchesTypes(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	for name, rt := range map[string]reflect.Type{
		"TokenInput":        reflect.TypeFor[tokenInput](),
		"Token":             reflect.TypeFor[tokenView](),
		"MintedToken":       reflect.TypeFor[mintedToken](),
		"ReconcileRequest":  reflect.TypeFor[reconcileRequest](),
		"ReconcileScope":    reflect.TypeFor[reconcileScope](),
		"ReconcilePosition": reflect.TypeFor[reconcilePosition](),
		"ManifestRecord":    reflect.TypeFor[manifestRecord](),
		"ReconcileAnswer":   reflect.TypeFor[reconcileAnswer](),
		"ReconcilePut":      reflect.TypeFor[reconcilePut](),
		"ReconcileSame":     reflect.TypeFor[reconcileSame](),
		"AnswerPosition":    reflect.TypeFor[answerPosition](),

		"PublishRequest":  reflect.TypeFor[apiclient.PublishRequest](),
		"PublishedEntry":  reflect.TypeFor[apiclient.PublishedEntry](),
		"PublishResponse": reflect.TypeFor[apiclient.PublishResponse](),
		"BatchRequest":    reflect.TypeFor[batchBody](),
		"BatchResponse":   reflect.TypeFor[apiclient.BatchResponse](),
		"Error":           reflect.TypeFor[syncpoint.Error](),
		"ErrorResponse":   reflect.TypeFor[apiclient.ErrorResponse](),
		"Conditions":      reflect.TypeFor[syncpoint.Conditions](),
		"ChannelInfo":     reflect.TypeFor[channelInfoView](),
		"Entry":           reflect.TypeFor[entryView](),
		"ChannelPage":     reflect.TypeFor[channelView](),
		"Biz":             reflect.TypeFor[bizView](),
		"BizInput":        reflect.TypeFor[bizInput](),
		"Webhook":         reflect.TypeFor[webhookView](),
		"WebhookInput":    reflect.TypeFor[webhookInput](),
		"Device":          reflect.TypeFor[deviceView](),
		"SyncPoint":       reflect.TypeFor[syncPointView](),
		"DeviceDetail":    reflect.TypeFor[deviceDetail](),

		"StartRequest":     reflect.TypeFor[httpsync.StartRequest](),
		"StartResponse":    reflect.TypeFor[httpsync.StartResponse](),
		"Queue":            reflect.TypeFor[httpsync.Queue](),
		"ChannelStatus":    reflect.TypeFor[httpsync.ChannelStatus](),
		"QueuePage":        reflect.TypeFor[httpsync.QueuePage](),
		"QueueItem":        reflect.TypeFor[httpsync.QueueItem](),
		"ItemMeta":         reflect.TypeFor[httpsync.ItemMeta](),
		"ItemSync":         reflect.TypeFor[httpsync.ItemSync](),
		"AckRequest":       reflect.TypeFor[httpsync.AckRequest](),
		"SyncRequest":      reflect.TypeFor[httpsync.SyncRequest](),
		"SyncEntity":       reflect.TypeFor[httpsync.SyncEntity](),
		"Scope":            reflect.TypeFor[httpsync.Scope](),
		"SyncResponse":     reflect.TypeFor[httpsync.SyncResponse](),
		"SyncEntityResult": reflect.TypeFor[httpsync.SyncEntityResult](),
		"SyncPosition":     reflect.TypeFor[httpsync.SyncPosition](),
		"Message":          reflect.TypeFor[httpsync.Message](),
		"Saved":            reflect.TypeFor[httpsync.Saved](),
		"RecordError":      reflect.TypeFor[httpsync.RecordError](),
		"V2Meta":           reflect.TypeFor[httpsync.V2Meta](),
		"V2Queue":          reflect.TypeFor[httpsync.V2Queue](),
		"V2StartResponse":  reflect.TypeFor[httpsync.V2StartResponse](),
		"V2QueuePage":      reflect.TypeFor[httpsync.V2QueuePage](),
		"V2QueueItem":      reflect.TypeFor[httpsync.V2QueueItem](),
		"V2ItemMeta":       reflect.TypeFor[httpsync.V2ItemMeta](),
		"V2PageMeta":       reflect.TypeFor[httpsync.V2PageMeta](),
		"V2Error":          reflect.TypeFor[httpsync.V2Error](),
		"V2ErrorResponse":  reflect.TypeFor[httpsync.V2ErrorResponse](),
	} {
		if _, ok := doc.Components["schemas"][name]; !ok {
			t.Errorf("docs/openapi.yaml has no schema %s", name)
			continue
		}
		props := doc.properties(t, schema{Ref: "#/components/schemas/" + name})
		fields := jsonFields(rt)
		for field, ft := range fields {
			p, ok := props[field]
			if !ok {
				t.Errorf("%s: field %q of %v is not in the schema", name, field, rt)
				continue
			}
			want := jsonType(ft)
			var types []string
			switch v := doc.resolve(t, p).Type.(type) {
			case string:
				types = []string{v}
			case []any:
				for _, x := range v {
					types = append(types, fmt.Sprint(x))
				}
			}
			if want != "" && len(types) > 0 && !slices.Contains(types, want) {
				t.Errorf("%s.%s: the schema says %v, the Go field (%v) is a JSON %s", name, field, types, ft, want)
			}
		}
		for prop := range props {
			if _, ok := fields[prop]; !ok {
				t.Errorf("%s: schema property %q is no field of %v", name, prop, rt)
			}
		}
		for _, req := range doc.resolve(t, schema{Ref: "#/components/schemas/" + name}).Required {
			if _, ok := props[req]; !ok {
				t.Errorf("%s: required %q is no property", name, req)
			}
		}
	}
}

// TestHandWrittenAnswersMatchTypes holds the publish answers, which are
// encoded by hand, to the types that TestOpenAPIMatchesTypes checks: each
// decodes into its type with no field left over.
func TestHandWrittenAnswersMatchTypes(t *testing.T) {
	ts := MustStartServer(t)
	strict := func(body []byte, v any) {
		t.Helper()
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("%s does not decode into %T: %v", body, v, err)
		}
	}
	var pr apiclient.PublishResponse
	strict(ts.call(t, "POST", "/v1/publish", `{"biz":"typing","users":["u1"]}`, 200, nil).body, &pr)
	if !pr.Entries[0].Ephemeral {
		t.Fatalf("ephemeral publish = %+v", pr)
	}
	var br apiclient.BatchResponse
	strict(ts.call(t, "POST", "/v1/publish/batch", `{"publishes":[{"biz":"chat","users":["u1"],"idempotency_key":"k"},{"biz":"chat","users":["u1"],"idempotency_key":"k"},{"biz":"nope","global":true}]}`, 200, nil).body, &br)
	if len(br.Results) != 3 || !br.Results[1].Entries[0].Duplicate || br.Results[2].Error == nil {
		t.Fatalf("batch = %+v", br)
	}
	var eb apiclient.ErrorResponse
	strict(ts.do(t, "POST", "/v1/publish", `{}`, testKey).body, &eb)
}
