package main

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// gcSummary is what GODEBUG=gctrace=1 told about the garbage collections of a run.
type gcSummary struct {
	Cycles int // collections during the run
	// LastLiveMB and MaxLiveMB are the live heap after a collection (the N of gctrace's
	// "a->b->N MB"): at the last one and the largest.
	LastLiveMB, MaxLiveMB int64
	// MaxGoalMB is the largest heap goal: where the heap was allowed to grow.
	MaxGoalMB int64
	// CPUPercent is the last collection's share of the process's CPU spent on GC since
	// it started (gctrace's "N%").
	CPUPercent int
	// CPUMillis is the CPU the run's collections took: the sum of their "ms cpu"
	// parts (stop-the-world, assist, background and idle marking, termination).
	CPUMillis float64
}

// A gctrace line, e.g.
// gc 8 @0.075s 7%: 1.3+0.74+0.001 ms clock, 2.7+0/0.62/0+0.002 ms cpu, 5->5->4 MB, 6 MB goal, 0 MB stacks, 0 MB globals, 2 P
var (
	gctraceLine = regexp.MustCompile(`^gc \d+ @[0-9.]+s (\d+)%: .* (\d+)->(\d+)->(\d+) MB, (\d+) MB goal`)
	gctraceCPU  = regexp.MustCompile(` ms clock, ([0-9.+/]+) ms cpu,`)
)

// parseGCTrace summarises the gctrace lines of a process's stderr; other lines (Caddy's
// own log) are skipped. Forced collections count like the others.
func parseGCTrace(stderr []byte) (gcSummary, error) {
	var s gcSummary
	sc := bufio.NewScanner(bytes.NewReader(stderr))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := gctraceLine.FindSubmatch(sc.Bytes())
		if m == nil {
			continue
		}
		var n [5]int64
		for i := range n {
			v, err := strconv.ParseInt(string(m[i+1]), 10, 64)
			if err != nil {
				return s, fmt.Errorf("gctrace %q: %w", sc.Text(), err)
			}
			n[i] = v
		}
		s.Cycles++
		s.CPUPercent = int(n[0])
		s.LastLiveMB = n[3]
		s.MaxLiveMB = max(s.MaxLiveMB, n[3])
		s.MaxGoalMB = max(s.MaxGoalMB, n[4])
		if cpu := gctraceCPU.FindSubmatch(sc.Bytes()); cpu != nil {
			for _, part := range strings.FieldsFunc(string(cpu[1]), func(r rune) bool { return r == '+' || r == '/' }) {
				ms, err := strconv.ParseFloat(part, 64)
				if err != nil {
					return s, fmt.Errorf("gctrace %q: %w", sc.Text(), err)
				}
				s.CPUMillis += ms
			}
		}
	}
	return s, sc.Err()
}

// parseHeapAlloc reads HeapAlloc from a heap profile in text form (/debug/pprof/heap?debug=1),
// which lists runtime.MemStats after the samples. Right after a forced collection
// (gc=1) it is the live heap.
func parseHeapAlloc(profile []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(profile))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("# HeapAlloc = ")); ok {
			return strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("heap profile has no HeapAlloc")
}
