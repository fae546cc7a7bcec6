module github.com/syncpoint/syncpoint/internal/jsonbench

go 1.26.8

require (
	github.com/go-json-experiment/json v1.27.2
	github.com/goccy/go-json v0.10.5
	github.com/segmentio/encoding v0.5.4
	github.com/syncpoint/syncpoint v0.0.0
)

require (
	github.com/segmentio/asm v1.1.3 // indirect
	golang.org/x/mod v0.42.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace github.com/syncpoint/syncpoint => ../..
