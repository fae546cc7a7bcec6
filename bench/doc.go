// Package bench is syncpoint's load generator: the scenarios behind
// `syncpoint bench`.
//
// Each scenario is a function that takes a Config and returns a Report. The
// devices are raw protocol clients built on package wire (a socket or an
// event stream, a reader goroutine and a few counters each), not the SDK,
// so one process can hold tens of thousands of them. Entries are published through the business
// API, as a backend would.
//
//   - Latency: devices on their own user channels, a paced publish rate, and
//     publish-to-receive latency with per-device checks that every entry
//     arrived exactly once and in order.
//   - Fanout: one global entry at a time, and how long until the last device
//     had it; pipelined, every entry without waiting for the devices, and
//     the entries and deliveries per second.
//   - PubSub: a few sequential publishers to devices on one global channel,
//     the shape other pub/sub servers are benchmarked with: deliveries per
//     second, publish-to-device latency and the server's CPU time per
//     delivered entry.
//   - Idle: connect and hold devices; the connect rate, and the server's
//     memory per connection read from its /metrics.
//   - Catchup: one device syncs a large backlog from zero.
//   - Publish: durable publishes per second through the business API.
//   - Upload: record writes from devices, answered by write_result.
//   - SSE: Latency's publishing to devices on Server-Sent Event streams,
//     optionally beside as many socket devices in the same run, with the
//     server's CPU time per delivered entry.
//
// A Target may list the nodes of a cluster. Device i connects to node
// i mod N, and publish requests go round robin over the nodes: the entries
// of Fanout and PubSub and Publish's requests in turn, the setup batches of Catchup and
// HTTPSync in turn, and the paced entries of Latency, SSE and LongPoll
// rotated so that each channel's entries go through every node. With
// CrossNode the devices are on the second node onwards and every publish
// goes to the first, so each delivery crosses between nodes. The server CPU
// figures are the sum over the nodes, with each node's part beside.
//
// A figure is never reported for work that failed. Every report counts its
// errors (connect failures, failed publishes, protocol errors, unexpected
// closes) and its delivery failures (lost, duplicated and reordered
// entries), and Failures returns their sum, so a caller can tell whether the
// figures stand.
package bench
