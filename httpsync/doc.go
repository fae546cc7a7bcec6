// Package httpsync serves devices that sync over plain HTTP, without a
// socket: an iOS background refresh, a serverless function, a browser
// behind a proxy that drops WebSockets. docs/http-sync.md is the
// protocol, in full.
//
// Every form names the device with X-Device-Id (or X-Basecrm-Device-UUID,
// or a device_id query parameter) and carries the device's token as a
// bearer token, checked by the hub's verifier. The device is bound to the
// token's user as a socket hello binds it.
package httpsync
