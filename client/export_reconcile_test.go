package client

import "net/http"

// SetReconcileTransport makes c send its reconcile requests through rt, so
// that a test can count their bytes. Call it before Run.
func SetReconcileTransport(c *Client, rt http.RoundTripper) {
	c.rec.http = &http.Client{Transport: rt}
}
