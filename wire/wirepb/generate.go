// Package wirepb is the protobuf form of the syncpoint device protocol,
// generated from syncpoint.proto. Code should use package wire, which
// converts to and from these types; this package exists so the schema has
// one source that other languages can compile too.
package wirepb

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative syncpoint.proto
