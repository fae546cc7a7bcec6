// Package jsonbench measures syncpoint's hand-written JSON layer (the wire
// codec's text frames) against well-kept JSON libraries on the same inputs,
// so that the choice to keep a hand-written codec rests on figures.
//
// It is its own module, so that the libraries it compares against never
// become dependencies of syncpoint itself. Run it from this folder:
//
//	go test -run '^$' -bench . -benchmem
//
// The figures and the decision are in docs/benchmarks.md.
package jsonbench
