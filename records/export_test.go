package records

import "github.com/syncpoint/syncpoint/wire"

// ChangeHash is the content hash the service gives the store for a change
// of the kind "create", "update" or "delete", for tests that fake an
// earlier try of a write.
func ChangeHash(k string, r wire.Record) []byte {
	return changeHash(map[string]kind{"create": kindCreate, "update": kindUpdate, "delete": kindDelete}[k], &r)
}
