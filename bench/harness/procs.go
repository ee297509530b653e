package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a program the harness started (Caddy, the bench servers), its output
// going to a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed when the process has exited
}

// startProcess starts bin with args and env added to the harness's environment; its
// stdout and stderr go to logPath.
func startProcess(name, logPath string, env []string, bin string, args ...string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Should the harness itself be killed, the kernel stops what it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// stop ends the process: SIGTERM, then SIGKILL if it is still there after 5 s.
func (p *process) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// logTail returns the last lines of the process's log, for error messages.
func (p *process) logTail(lines int) string {
	data, _ := os.ReadFile(p.logPath)
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return fmt.Sprintf("--- %s log (%s), last lines ---\n%s", p.name, p.logPath, strings.Join(all, "\n"))
}

// waitHTTP waits, at most 10 s, until something answers HTTP at url; it gives up at
// once when the process that should answer has exited.
func waitHTTP(ctx context.Context, p *process, url string) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before answering at %s\n%s", p.name, url, p.logTail(20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing answers at %s after 10 s\n%s", url, p.logTail(20))
		}
	}
}

// checkPortsFree fails when one of the loopback ports is taken, before anything starts.
func checkPortsFree(ports ...int) error {
	for _, port := range ports {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return fmt.Errorf("port %d on 127.0.0.1 is in use; set BASE_PORT", port)
		}
		ln.Close()
	}
	return nil
}

// clockTicksPerSecond is the unit of CPU times in /proc (USER_HZ), 100 on every Linux
// architecture the harness runs on; Go cannot ask sysconf without cgo.
const clockTicksPerSecond = 100

// processCPUTicks returns the user + system CPU a process used so far, all threads, in
// clock ticks.
func processCPUTicks(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStatTicks(string(data))
}

// parseProcStatTicks reads utime + stime from a /proc/<pid>/stat line. The command name
// in parentheses may hold spaces and parentheses, so fields count from the last ')'.
func parseProcStatTicks(stat string) (int64, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("/proc/<pid>/stat: no command name")
	}
	// After the name: state(3) ppid(4) ... utime(14) stime(15), numbered as in proc(5).
	fields := strings.Fields(stat[end+1:])
	if len(fields) < 13 {
		return 0, errors.New("/proc/<pid>/stat: too few fields")
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/<pid>/stat: %w", err)
	}
	return utime + stime, nil
}

// machineBusyTicks returns the CPU time all cores spent neither idle nor waiting for
// I/O, in clock ticks.
func machineBusyTicks() (int64, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineBusyTicks(data)
}

// parseMachineBusyTicks reads the aggregate "cpu" line of /proc/stat: user, nice,
// system, irq, softirq and steal (guest time is already inside user and nice).
func parseMachineBusyTicks(stat []byte) (int64, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, errors.New("/proc/stat: no aggregate cpu line")
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseInt(fields[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += v
	}
	return busy, nil
}

// memoryStatus is a process's resident memory from /proc/<pid>/status.
type memoryStatus struct {
	PeakRSSKiB int64 // VmHWM
	RSSKiB     int64 // VmRSS
}

func processMemory(pid int) (memoryStatus, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memoryStatus{}, err
	}
	return parseProcStatus(data)
}

func parseProcStatus(status []byte) (memoryStatus, error) {
	var m memoryStatus
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmHWM" && name != "VmRSS") {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return m, fmt.Errorf("/proc/<pid>/status %s: %w", name, err)
		}
		if name == "VmHWM" {
			m.PeakRSSKiB = kib
		} else {
			m.RSSKiB = kib
		}
		found++
	}
	if found != 2 {
		return m, errors.New("/proc/<pid>/status: no VmHWM or VmRSS")
	}
	return m, nil
}

// resetPeakRSS sets a process's VmHWM back to its current RSS (writing 5 to
// clear_refs), so that the next reading is the peak of what follows. It reports
// whether the kernel allowed it.
func resetPeakRSS(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}
