package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Files the server keeps in its data dir beside the store.
const (
	secretsFile = "secrets.json" // generated secrets, mode 0600
	serverFile  = "server.json"  // where the running server listens, for client subcommands
)

// secrets are the credentials kept in DATA/secrets.json. Only generated
// secrets are kept there; ones given by flag or env never touch the disk.
type secrets struct {
	APIKey      string `json:"api_key,omitempty"`
	TokenSecret string `json:"token_secret,omitempty"`
}

// serverInfo is DATA/server.json.
type serverInfo struct {
	HTTP string `json:"http"`          // host:port of the HTTP API
	URL  string `json:"url,omitempty"` // its base URL: https:// when it speaks TLS
	TCP  string `json:"tcp,omitempty"` // host:port of the raw TCP listener
	PID  int    `json:"pid"`
}

// readSecrets reads DATA/secrets.json; a missing file gives zero secrets.
func readSecrets(dir string) (secrets, error) {
	var s secrets
	data, err := os.ReadFile(filepath.Join(dir, secretsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read secrets: %w", err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("read secrets: %s: %w", filepath.Join(dir, secretsFile), err)
	}
	return s, nil
}

// readServerInfo reads DATA/server.json.
func readServerInfo(dir string) (serverInfo, error) {
	var si serverInfo
	data, err := os.ReadFile(filepath.Join(dir, serverFile))
	if err != nil {
		return si, fmt.Errorf("read server info: %w", err)
	}
	if err := json.Unmarshal(data, &si); err != nil {
		return si, fmt.Errorf("read server info: %s: %w", filepath.Join(dir, serverFile), err)
	}
	return si, nil
}

// writeFileAtomic writes data to path through a synced temporary file and a
// rename, so a crash leaves either the old file or the new one.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync() // make the rename itself durable; best effort
		d.Close()
	}
	return nil
}

func writeJSONFile(path string, v any, mode fs.FileMode) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'), mode)
}

// newSecret returns 32 random bytes in hex.
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// resolveSecrets fills in the secrets that neither a flag nor the
// environment gave: from DATA/secrets.json, or generated. It returns what it
// generated, so the caller prints only those, once, and save, which keeps
// them in DATA/secrets.json. It writes nothing itself: the caller saves and
// prints once the server has bound its ports, so a start that fails leaves
// no secret behind that nobody saw.
func resolveSecrets(dir string, given secrets) (use, generated secrets, save func() error, err error) {
	use = given
	save = func() error { return nil }
	if use.APIKey != "" && use.TokenSecret != "" {
		return use, generated, save, nil
	}
	path := filepath.Join(dir, secretsFile)
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		// Someone loosened it; secrets readable by others are not secret.
		if err := os.Chmod(path, 0o600); err != nil {
			return use, generated, save, fmt.Errorf("secrets: %s has mode %v and cannot be made 0600: %w", path, fi.Mode().Perm(), err)
		}
	}
	stored, err := readSecrets(dir)
	if err != nil {
		return use, generated, save, err
	}
	changed := false
	fill := func(dst *string, kept *string, gen *string) error {
		if *dst != "" {
			return nil
		}
		if *kept != "" {
			*dst = *kept
			return nil
		}
		s, err := newSecret()
		if err != nil {
			return err
		}
		*dst, *kept, *gen = s, s, s
		changed = true
		return nil
	}
	if err := fill(&use.APIKey, &stored.APIKey, &generated.APIKey); err != nil {
		return use, generated, save, err
	}
	if err := fill(&use.TokenSecret, &stored.TokenSecret, &generated.TokenSecret); err != nil {
		return use, generated, save, err
	}
	if changed {
		save = func() error {
			if err := writeJSONFile(path, stored, 0o600); err != nil {
				return fmt.Errorf("write secrets: %w", err)
			}
			return nil
		}
	}
	return use, generated, save, nil
}
