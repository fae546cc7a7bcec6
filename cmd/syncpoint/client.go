package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/syncpoint/syncpoint/auth"
)

// clientFlags find the server and its secrets for the client subcommands:
// each comes from its flag, else from the server's data dir (server.json,
// secrets.json), else from the environment.
type clientFlags struct {
	server      string
	apiKey      string
	tokenSecret string
	dataDir     string
	tlsCA       string
}

// addServer adds --server and --api-key.
func (c *clientFlags) addServer(fl *pflag.FlagSet) {
	fl.StringVar(&c.server, "server", "", "server URL (default: from DATA/server.json, else $"+envServer+", else http://"+defaultListen+")")
	fl.StringVar(&c.apiKey, "api-key", "", "API key (default: from DATA/secrets.json, else $"+envAPIKey+")")
}

// addTLSCA adds --tls-ca, for a server whose certificate the system does
// not trust (a self-signed one in development).
func (c *clientFlags) addTLSCA(fl *pflag.FlagSet) {
	fl.StringVar(&c.tlsCA, "tls-ca", "", "PEM file of the CA (or self-signed certificate) to trust for an https:// server")
}

// httpClient returns a client for the server: one that trusts only
// --tls-ca when it is given, else the system roots.
func (c *clientFlags) httpClient(timeout time.Duration) (*http.Client, error) {
	if c.tlsCA == "" {
		return &http.Client{Timeout: timeout}, nil
	}
	pem, err := os.ReadFile(c.tlsCA)
	if err != nil {
		return nil, fmt.Errorf("read --tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, usagef("--tls-ca %s holds no PEM certificate", c.tlsCA)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// addTokenSecret adds --token-secret.
func (c *clientFlags) addTokenSecret(fl *pflag.FlagSet) {
	fl.StringVar(&c.tokenSecret, "token-secret", "", "token secret (default: from DATA/secrets.json, else $"+envTokenSecret+")")
}

// addDataDir adds --data-dir, and --data as its alias where --data means
// nothing else.
func (c *clientFlags) addDataDir(fl *pflag.FlagSet, withDataAlias bool) {
	fl.StringVar(&c.dataDir, "data-dir", defaultDataDir, "the server's data dir, to find its address and secrets")
	if withDataAlias {
		fl.StringVar(&c.dataDir, "data", defaultDataDir, "the server's data dir (same as --data-dir)")
	}
}

// serverURL returns the base URL of the server, without a trailing slash.
func (c *clientFlags) serverURL(e env) (string, error) {
	s := c.server
	if s == "" {
		if si, err := readServerInfo(c.dataDir); err == nil && si.URL != "" {
			s = si.URL
		} else if err == nil && si.HTTP != "" {
			s = "http://" + si.HTTP
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	if s == "" {
		s = e.getenv(envServer)
	}
	if s == "" {
		s = "http://" + defaultListen
	}
	return normalizeServer(s)
}

// serverURLs is serverURL for a device, whose --server may list several
// nodes of a cluster, comma-separated: the SDK moves on to the next when
// one cannot be reached.
func (c *clientFlags) serverURLs(e env) (first string, more []string, err error) {
	list := splitList([]string{c.server})
	if len(list) < 2 {
		first, err = c.serverURL(e)
		return first, nil, err
	}
	for _, s := range list {
		u, err := normalizeServer(s)
		if err != nil {
			return "", nil, err
		}
		more = append(more, u)
	}
	return more[0], more[1:], nil
}

func normalizeServer(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", usagef("server %q: want a URL such as http://127.0.0.1:7420", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// resolveAPIKey returns the API key to send.
func (c *clientFlags) resolveAPIKey(e env) (string, error) {
	return c.resolve(e, c.apiKey, func(s secrets) string { return s.APIKey }, envAPIKey, "--api-key")
}

// resolveTokenSecret returns the secret to sign tokens with.
func (c *clientFlags) resolveTokenSecret(e env) (string, error) {
	return c.resolve(e, c.tokenSecret, func(s secrets) string { return s.TokenSecret }, envTokenSecret, "--token-secret")
}

func (c *clientFlags) resolve(e env, flag string, pick func(secrets) string, envName, flagName string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	s, err := readSecrets(c.dataDir)
	if err != nil {
		return "", err
	}
	if v := pick(s); v != "" {
		return v, nil
	}
	if v := e.getenv(envName); v != "" {
		return v, nil
	}
	return "", usagef("no %s given, none in %s/%s and $%s is unset", flagName, c.dataDir, secretsFile, envName)
}

// mintDeviceToken mints a development device token with the token secret
// the command can find, for the commands that act as a device. A user or
// group the token cannot carry is a usage error.
func (c *clientFlags) mintDeviceToken(e env, user string, groups []string, ttl time.Duration) (string, error) {
	secret, err := c.resolveTokenSecret(e)
	if err != nil {
		return "", err
	}
	now := time.Now()
	tok, err := auth.Mint([]byte(secret), auth.Claims{User: user, Groups: splitList(groups), ExpiresAt: now.Add(ttl)}, now)
	if err != nil {
		return "", usageError{err}
	}
	return tok, nil
}
