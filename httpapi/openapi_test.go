package httpapi

import (
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

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

	s := New(Config{APIKey: "k"})
	mux := http.NewServeMux()
	s.Register(mux)
	var served []string
	for _, rt := range s.routes {
		served = append(served, rt.method+" "+rt.path)
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
			public := op.Security != nil && len(*op.Security) == 0
			if _, ok := op.Responses["401"]; !public && !ok {
				t.Errorf("%s %s needs the API key but documents no 401", method, path)
			}
			if needsKey[strings.ToUpper(method)+" "+path] == public {
				t.Errorf("%s %s: documented as public=%v, but the route's auth is %v", method, path, public, !public)
			}
		}
	}
}
