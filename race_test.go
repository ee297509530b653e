//go:build race

package customauth

const raceEnabled = true
