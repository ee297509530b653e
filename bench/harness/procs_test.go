package main

import (
	"os"
	"testing"
)

func TestParseProcStatTicks(t *testing.T) {
	// A command name with a space and a parenthesis: fields count from the last ')'.
	stat := "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 1234 0 0 0 731 269 0 0 20 0 12 0 1000 123456 789 18446744073709551615\n"
	got, err := parseProcStatTicks(stat)
	if err != nil || got != 731+269 {
		t.Errorf("parseProcStatTicks = %d, %v; want 1000", got, err)
	}
	for _, bad := range []string{"", "4242 no name 1 2 3", "4242 (x) S 1 2"} {
		if _, err := parseProcStatTicks(bad); err == nil {
			t.Errorf("parseProcStatTicks(%q) did not fail", bad)
		}
	}
}

func TestParseMachineBusyTicks(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	stat := "cpu  1000 20 300 9000 50 4 6 70 11 0\ncpu0 500 10 150 4500 25 2 3 35 5 0\n"
	got, err := parseMachineBusyTicks([]byte(stat))
	if want := int64(1000 + 20 + 300 + 4 + 6 + 70); err != nil || got != want {
		t.Errorf("parseMachineBusyTicks = %d, %v; want %d", got, err, want)
	}
	if _, err := parseMachineBusyTicks([]byte("cpu0 1 2 3 4 5 6 7 8\n")); err == nil {
		t.Error("a per-core line was read as the aggregate")
	}
}

func TestParseProcStatus(t *testing.T) {
	status := "Name:\tcaddy\nVmPeak:\t 2000000 kB\nVmHWM:\t  163532 kB\nVmRSS:\t  120004 kB\nThreads:\t12\n"
	got, err := parseProcStatus([]byte(status))
	if err != nil || got != (memoryStatus{PeakRSSKiB: 163532, RSSKiB: 120004}) {
		t.Errorf("parseProcStatus = %+v, %v", got, err)
	}
	if _, err := parseProcStatus([]byte("Name:\tcaddy\nVmRSS:\t 1 kB\n")); err == nil {
		t.Error("a status without VmHWM passed")
	}
}

// The readers work on this machine's real /proc.
func TestProcReaders(t *testing.T) {
	if _, err := processCPUTicks(os.Getpid()); err != nil {
		t.Error(err)
	}
	busy, err := machineBusyTicks()
	if err != nil || busy <= 0 {
		t.Errorf("machineBusyTicks = %d, %v", busy, err)
	}
	m, err := processMemory(os.Getpid())
	if err != nil || m.RSSKiB <= 0 || m.PeakRSSKiB < m.RSSKiB {
		t.Errorf("processMemory = %+v, %v", m, err)
	}
}
