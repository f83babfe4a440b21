//go:build race

package httpapi

// raceEnabled: the race detector slows allocation-heavy tests tenfold.
const raceEnabled = true
