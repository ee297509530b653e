//go:build race

package e2erun

const raceEnabled = true
