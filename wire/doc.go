// Package wire is the device protocol: the frames a device and the server
// exchange over one persistent connection, their two encodings, the TCP
// framing (and TCPConn, a connection that speaks it), and the close codes.
// The server (hub and its transports) and the Go SDK (client) both import
// it, so it imports neither; docs/protocol.md is the full reference.
//
// A session opens with the client's Hello (token, device id, platform, app
// version, the bizzes it subscribes to and its positions) and the server's
// Welcome (the version chosen, a session id, the heartbeat interval, and a
// status per channel: ok, reset or gap). Pushes then carry entries, the
// backlog first and live entries after, and the client acks cumulatively per
// channel. Write and WriteResult carry record uploads; Ping and Pong keep
// the connection alive; Error, with a CloseCode, tells a client whether to
// reconnect, resync or stop.
//
// Frames travel as JSON (WebSocket text frames, SubprotocolJSON) or
// protobuf (WebSocket binary frames, SubprotocolProto, and TCP with a 4-byte
// big-endian length prefix). The protobuf schema is wirepb/syncpoint.proto.
// Both codecs decode untrusted input: every failure is a *syncpoint.Error
// with CodeMalformed (CodeTooLarge past MaxFrameItems), never a panic.
package wire
