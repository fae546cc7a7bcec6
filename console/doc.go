// Package console serves the admin console, a web page at /console/ that an
// operator signs in to with the API key: an overview of the server's
// figures, bizzes, a channel browser, device lookup, a live tail of any
// channel, a publish form and opaque access tokens.
//
// The page is hand-written HTML, CSS and ES modules in assets/, embedded in
// the binary, so serving it needs neither Node nor a build step. It holds
// no secret of its own: everything it shows comes from the business API,
// which it calls with the key the operator typed, kept in the tab's
// sessionStorage. The assets are public, like any login page; every answer
// carries a strict Content-Security-Policy (scripts and styles from this
// origin only, nothing inline, no framing), so data the page shows can never
// run as script. docs/console.md describes the pages and the security model.
package console
