//go:build race

package client_test

// raceEnabled scales down the tests whose cost is mostly SQLite, which the
// race detector slows tenfold.
const raceEnabled = true
