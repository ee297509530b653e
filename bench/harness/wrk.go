package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// widgetScript is the wrk script: a chat-widget request with a fixed or a new token.
//
//go:embed widget.lua
var widgetScript []byte

// tokens says which access token wrk sends: the same one every time, or a new visitor
// (bench-<n>) on every request.
type tokens struct {
	fixed string // empty: a new token per request
}

func (t tokens) scriptArgs() []string {
	if t.fixed == "" {
		return []string{"fresh"}
	}
	return []string{"fixed", t.fixed}
}

// wrkResult is wrk's summary of one run, as widget.lua's done() prints it.
type wrkResult struct {
	Requests     int64         // completed
	Duration     time.Duration // of the run, as wrk measured it
	P50, P99     time.Duration // latency percentiles
	Non2xx       int64         // answers with a status of 400 and above
	SocketErrors int64         // connect, read, write errors and timeouts
	Sent         int64         // requests sent with a new token (0 with a fixed token)
	CPUTicks     int64         // user + system CPU of wrk itself
}

// load is one wrk run: where, how hard, how long, with which tokens.
type load struct {
	url            string
	threads, conns int
	duration       time.Duration
	tokens         tokens
	scriptPath     string // widget.lua, written to the work directory
}

func (l load) args() []string {
	args := []string{
		"-t" + strconv.Itoa(l.threads), "-c" + strconv.Itoa(l.conns),
		"-d" + seconds(l.duration),
		"-s", l.scriptPath, l.url, "--",
	}
	return append(args, l.tokens.scriptArgs()...)
}

// runWrk runs wrk and reads its summary.
func runWrk(ctx context.Context, l load) (wrkResult, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "wrk", l.args()...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return wrkResult{}, ctx.Err()
		}
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", strings.Join(l.args(), " "), err, out.String())
	}
	res, err := parseWrkSummary(out.Bytes())
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", strings.Join(l.args(), " "), err, out.String())
	}
	st := cmd.ProcessState
	res.CPUTicks = int64((st.UserTime() + st.SystemTime()) * clockTicksPerSecond / time.Second)
	return res, nil
}

// parseWrkSummary reads the BENCH line that widget.lua's done() prints.
func parseWrkSummary(out []byte) (wrkResult, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "BENCH ")
		if !ok {
			continue
		}
		values := map[string]int64{}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return wrkResult{}, fmt.Errorf("wrk summary %q: %w", kv, err)
			}
			values[k] = n
		}
		for _, k := range []string{"requests", "duration_us", "p50_us", "p99_us", "non2xx", "socket_errors", "sent"} {
			if _, ok := values[k]; !ok {
				return wrkResult{}, fmt.Errorf("wrk summary has no %s", k)
			}
		}
		if values["requests"] <= 0 || values["duration_us"] <= 0 {
			return wrkResult{}, fmt.Errorf("wrk completed no requests")
		}
		return wrkResult{
			Requests:     values["requests"],
			Duration:     time.Duration(values["duration_us"]) * time.Microsecond,
			P50:          time.Duration(values["p50_us"]) * time.Microsecond,
			P99:          time.Duration(values["p99_us"]) * time.Microsecond,
			Non2xx:       values["non2xx"],
			SocketErrors: values["socket_errors"],
			Sent:         values["sent"],
		}, nil
	}
	return wrkResult{}, fmt.Errorf("wrk printed no BENCH summary")
}
