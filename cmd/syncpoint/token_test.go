package main

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/syncpoint/syncpoint/auth"
)

// TestTokenOpaqueCommand mints an opaque token through the API: the token
// on stdout, its id on stderr, and the server lists it under the user.
func TestTokenOpaqueCommand(t *testing.T) {
	url := MustRunServer(t, "k1")
	e := newTestEnv(nil)
	code := run(t.Context(), e.env, []string{"token", "--opaque", "--server", url, "--api-key", "k1", "--user", "u1", "--groups", "g1,g2", "--ttl", "2h", "--label", "CI runner"})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, e.err)
	}
	secret := strings.TrimSpace(e.out.String())
	if !auth.IsOpaque(secret) {
		t.Fatalf("stdout %q is not an opaque token", e.out)
	}
	id := regexp.MustCompile(`tok-[0-9a-f]{24}`).FindString(e.err.String())
	if id == "" || strings.Contains(e.err.String(), secret) {
		t.Fatalf("stderr %q should name the id, not the secret", e.err)
	}
	req, _ := http.NewRequest("GET", url+"/v1/users/u1/tokens", nil)
	req.Header.Set("Authorization", "Bearer k1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Tokens []struct {
			ID     string   `json:"id"`
			Groups []string `json:"groups"`
			Label  string   `json:"label"`
		} `json:"tokens"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Tokens) != 1 {
		t.Fatalf("tokens of u1: %+v %v", list, err)
	}
	if tk := list.Tokens[0]; tk.ID != id || strings.Join(tk.Groups, ",") != "g1,g2" || tk.Label != "CI runner" {
		t.Fatalf("listed %+v, want id %s", tk, id)
	}

	// A mistake on the command line exits 2; a refusal by the server, 1.
	for _, args := range [][]string{
		{"token", "--opaque", "--server", url, "--api-key", "k1"},
		{"token", "--opaque", "--server", url, "--api-key", "k1", "--user", "bad user"},
		{"token", "--opaque", "--server", url, "--api-key", "k1", "--user", "u1", "--label", "a\nb"},
		{"token", "--token-secret", "0123456789abcdef0123", "--user", "u1", "--label", "only with --opaque"},
	} {
		e := newTestEnv(nil)
		if code := run(t.Context(), e.env, args); code != 2 {
			t.Errorf("%v: exit %d (%s); want 2", args, code, e.err)
		}
	}
	for _, args := range [][]string{
		{"token", "--opaque", "--server", url, "--api-key", "wrong", "--user", "u1"},
		{"token", "--opaque", "--server", url, "--api-key", "k1", "--user", "u1", "--ttl", "30s"},
	} {
		e := newTestEnv(nil)
		if code := run(t.Context(), e.env, args); code != 1 || e.out.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q (%s); want 1 and nothing printed", args, code, e.out, e.err)
		}
	}
}
