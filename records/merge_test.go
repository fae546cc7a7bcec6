package records

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func mustObject(t *testing.T, s string) *object {
	t.Helper()
	if s == "" {
		return nil
	}
	o, err := parseObject([]byte(s))
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return o
}

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		base, upload, current string
		fields                []string
		want                  string
		conflicts             []string
	}{
		{"disjoint", `{"a":1,"b":1}`, `{"a":2,"b":1}`, `{"a":1,"b":3}`, nil, `{"a":2,"b":3}`, nil},
		{"both same value", `{"a":1}`, `{"a":2}`, `{"a":2}`, nil, `{"a":2}`, nil},
		{"both differ", `{"a":1,"b":1}`, `{"a":2,"b":5}`, `{"a":3,"b":1}`, nil, `{"a":3,"b":5}`, []string{"a"}},
		{"device removes", `{"a":1,"b":1}`, `{"a":1}`, `{"a":1,"b":1,"c":1}`, nil, `{"a":1,"c":1}`, nil},
		{"device adds", `{"a":1}`, `{"a":1,"n":{"x":[1]}}`, `{"a":2}`, nil, `{"a":2,"n":{"x":[1]}}`, nil},
		{"server removes, device changes", `{"a":1}`, `{"a":2}`, `{}`, nil, `{}`, []string{"a"}},
		{"server removes, device keeps", `{"a":1,"b":1}`, `{"a":1,"b":2}`, `{"b":1}`, nil, `{"b":2}`, nil},
		{"spacing and order inside values", `{"a":{"x":1,"y":2}}`, `{"a":{ "y":2, "x":1 }}`, `{"a":{"x":1,"y":3}}`, nil, `{"a":{"x":1,"y":3}}`, nil},
		{"no base: differing fields conflict", "", `{"a":1,"b":2}`, `{"a":1,"b":3,"c":4}`, nil, `{"a":1,"b":3,"c":4}`, []string{"b"}},
		{"no base, fields named", "", `{"a":9,"b":2}`, `{"a":1,"b":3,"c":4}`, []string{"b", "c", "b"}, `{"a":1,"b":2}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, conflicts := merge(mustObject(t, tc.base), mustObject(t, tc.upload), mustObject(t, tc.current), tc.fields)
			var g, w any
			json.Unmarshal(got.marshal(), &g)
			json.Unmarshal([]byte(tc.want), &w)
			if !reflect.DeepEqual(g, w) {
				t.Errorf("merged %s, want %s", got.marshal(), tc.want)
			}
			if !reflect.DeepEqual(conflicts, tc.conflicts) {
				t.Errorf("conflicts %v, want %v", conflicts, tc.conflicts)
			}
		})
	}
}

func TestParseObjectKeepsOrder(t *testing.T) {
	o, err := parseObject([]byte(` {"z":1,"a":[1, 2],"m":"\u00e9","a":null} `))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(o.marshal()); got != `{"z":1,"a":null,"m":"\u00e9"}` {
		t.Fatalf("marshal = %s", got)
	}
	for _, bad := range []string{``, `[]`, `"x"`, `{"a":}`, `{"a":1}{`, `null`, `{`} {
		if _, err := parseObject([]byte(bad)); err == nil {
			t.Errorf("%q parsed as an object", bad)
		}
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"550e8400-e29b-41d4-a716-446655440000": true,
		"550E8400-E29B-41D4-A716-446655440000": true,
		"550e8400e29b41d4a716446655440000":     false, // no hyphens
		"550e8400-e29b-41d4-a716-44665544000g": false,
		"01ARZ3NDEKTSV4RRFFQ69G5FAV":           true,
		"01arz3ndektsv4rrffq69g5fav":           true,
		"81ARZ3NDEKTSV4RRFFQ69G5FAV":           false, // over 128 bits
		"01ARZ3NDEKTSV4RRFFQ69G5FAU":           false, // U is not Crockford
		"507f1f77bcf86cd799439011":             true,
		"507f1f77bcf86cd79943901z":             false,
		"":                                     false,
		"x":                                    false,
		strings.Repeat("a", 129):               false,
	} {
		if got := ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestIdemKey(t *testing.T) {
	if got := idemKey("d1", "w1", "507f1f77bcf86cd799439011"); got != "w:d1:w1:507f1f77bcf86cd799439011" {
		t.Errorf("idemKey = %s", got)
	}
	// Colons in the write id, or a long key, are hashed, so two devices
	// cannot make the same key.
	a, b := idemKey("a:b", "c", "x"), idemKey("a", "b:c", "x")
	if a == b || !strings.HasPrefix(b, "w#") {
		t.Errorf("ambiguous keys %s %s", a, b)
	}
	long := idemKey(strings.Repeat("d", 128), strings.Repeat("w", 128), "507f1f77bcf86cd799439011")
	if len(long) > 256 || !strings.HasPrefix(long, "w#") {
		t.Errorf("long key %s", long)
	}
}

func TestSign(t *testing.T) {
	// printf '1700000000.{}' | openssl dgst -sha256 -hmac k
	const want = "sha256=c6ef4734033cee2367414a0939385eca0397754aa7a59716da7463a9298b5146"
	if got := Sign("k", 1700000000, []byte("{}")); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}
