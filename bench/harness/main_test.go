package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func envOf(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	c, err := loadConfig(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.scenarios, allScenarios) || c.duration != 10*time.Second || c.rounds != 3 ||
		c.conns != 64 || c.threads != 2 || c.warmup != 3*time.Second || c.ports.base != 18400 ||
		c.apiLatency != 50*time.Millisecond || !slices.Equal(c.latencyConns, []int{64, 256}) ||
		c.memoryDuration != 60*time.Second || c.memoryLimit != "" {
		t.Errorf("defaults = %+v", c)
	}
	if c.command != "bench/run.sh" {
		t.Errorf("command = %q", c.command)
	}
}

func TestLoadConfigSettings(t *testing.T) {
	c, err := loadConfig(envOf(map[string]string{
		"SCENARIO": "memory,sites", "DURATION": "3s", "ROUNDS": "1", "LATENCY_CONNS": "8, 512",
		"MEMORY_GOMEMLIMIT": "128MiB", "API_LATENCY": "0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	// Scenarios run in their fixed order, whatever order they are asked in.
	if !slices.Equal(c.scenarios, []string{"sites", "memory"}) || c.duration != 3*time.Second || c.rounds != 1 ||
		!slices.Equal(c.latencyConns, []int{8, 512}) || c.memoryLimit != "128MiB" || c.apiLatency != 0 {
		t.Errorf("config = %+v", c)
	}
	// The report names the settings as typed, in the order of settings.
	if want := "SCENARIO=memory,sites DURATION=3s ROUNDS=1 API_LATENCY=0 LATENCY_CONNS=8, 512 MEMORY_GOMEMLIMIT=128MiB bench/run.sh"; c.command != want {
		t.Errorf("command = %q, want %q", c.command, want)
	}
}

func TestLoadConfigRefuses(t *testing.T) {
	for _, env := range []map[string]string{
		{"SCENARIO": "speed"},
		{"SCENARIO": ""},
		{"DURATION": "1.5s"},
		{"DURATION": "500ms"},
		{"WARMUP": "ten"},
		{"ROUNDS": "0"},
		{"CONNS": "-1"},
		{"THREADS": "8", "CONNS": "4"},
		{"THREADS": "4", "LATENCY_CONNS": "64 2"},
		{"BASE_PORT": "80"},
		{"API_LATENCY": "-1ms"},
		{"LATENCY_CONNS": ""},
		{"MEMORY_GOMEMLIMIT": "lots"},
		{"MEMORY_DURATION": "0s"},
	} {
		c, err := loadConfig(envOf(env))
		if err == nil {
			t.Errorf("%v: accepted, %+v", env, c)
			continue
		}
		for name := range env {
			if !strings.Contains(err.Error(), name) && !strings.Contains(err.Error(), "THREADS") {
				t.Errorf("%v: the error does not name the setting: %v", env, err)
			}
		}
	}
}
