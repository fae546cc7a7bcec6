// Package chaos holds syncpoint's fault-injection scenarios: the real
// binary, started by package servetest, is run behind fault-injecting
// proxies (package faultnet), killed with SIGKILL under load, given a full
// disk, flooded by hostile clients, and cut off from NATS in a cluster,
// while SDK devices, HTTP sync clients and SSE readers sync through it.
// Each scenario records what was published, uploaded and applied in a
// history (package history) and checks it at the end: nothing acknowledged
// lost, nothing applied twice, order kept, every upload stored once, local
// records equal to the server's.
//
// The package has only tests; docs/testing.md says how to run them, how
// to replay a failing seed and how to run a soak.
package chaos
