// Package servicetest runs a service a test talks to (Jaeger, an
// OpenTelemetry Collector) as a process of its own: in its own process
// group and killed if the test binary dies, its output appended to a log
// file, ready when its health URL answers 200 while the process started
// here is still alive (a stale one on the same port would answer for one
// that died at startup), stopped with a signal and SIGKILL after a grace
// period. internal/jaegertest and internal/otelcoltest build on it.
package servicetest

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrPortTaken is Start's error when the service could not bind a port:
// ports are picked free and then closed, so another process can take one
// first; the caller picks others and starts again.
var ErrPortTaken = errors.New("address already in use")

// Process is one service. Set the fields, then Start; Start may be called
// again after Stop (a restart after an outage).
type Process struct {
	Name      string   // in messages: "jaeger", "the Collector"
	Bin       string   // the binary
	Dir       string   // its working directory
	Env       []string // added to the test's environment
	LogPath   string   // its stdout and stderr, appended across starts
	HealthURL string   // answers 200 when the service is ready
	// Logf reports a stop that needed SIGKILL (the test's Logf).
	Logf func(format string, args ...any)

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// Start runs Bin with args and waits up to wait until HealthURL answers
// 200, and returns how long that took. header goes into the log first, to
// tell this start's lines from an earlier one's.
func (p *Process) Start(args []string, header string, wait time.Duration) (time.Duration, error) {
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("opening %s's log: %w", p.Name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "==== %s at %s ====\n", header, time.Now().Format(time.RFC3339Nano))
	logStart, _ := logf.Seek(0, 1)

	cmd := exec.Command(p.Bin, args...)
	cmd.Dir = p.Dir
	if p.Env != nil {
		cmd.Env = append(os.Environ(), p.Env...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", p.Bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()

	deadline := time.Now().Add(wait)
	for {
		select {
		case <-exited:
			p.forget()
			err := fmt.Errorf("%s exited at startup (%v)\n%s", p.Name, cmd.ProcessState, p.LogTail(40))
			if p.logSince(logStart, "address already in use") {
				return 0, fmt.Errorf("%w: %w", ErrPortTaken, err)
			}
			return 0, err
		default:
		}
		if p.healthy() && alive(exited) {
			return time.Since(t0), nil
		}
		if time.Now().After(deadline) {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			p.forget()
			return 0, fmt.Errorf("%s not healthy at %s within %v (killed it)\n%s", p.Name, p.HealthURL, wait, p.LogTail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *Process) forget() {
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
}

// Running says whether a started process has not been stopped.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Stop sends sig to the process group and, if it is still there after
// wait, SIGKILL. It does nothing when nothing runs.
func (p *Process) Stop(sig syscall.Signal, wait time.Duration) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	// The whole group: a group signal leaves nothing behind if a future
	// version starts children.
	syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-exited:
		return
	case <-time.After(wait):
	}
	if p.Logf != nil {
		p.Logf("%s: pid %d still running %v after %v, killing it", p.Name, cmd.Process.Pid, wait, sig)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

func alive(exited chan struct{}) bool {
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

func (p *Process) healthy() bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(p.HealthURL)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Log is everything the process has logged, over every start.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// logSince says whether the log holds s after offset off.
func (p *Process) logSince(off int64, s string) bool {
	b, _ := os.ReadFile(p.LogPath)
	if off > int64(len(b)) {
		return false
	}
	return bytes.Contains(b[off:], []byte(s))
}

// LogTail is the log's last n lines, with a heading naming the file.
func (p *Process) LogTail(n int) string {
	lines := strings.Split(strings.TrimSpace(p.Log()), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return p.Name + "'s log (" + p.LogPath + "), last lines:\n" + strings.Join(lines, "\n")
}

// StartOnFreePorts calls pick (choose free ports, write what names them)
// then start, until start succeeds. Ports are picked free and then closed,
// so another process can take one before the service binds it: on
// ErrPortTaken it picks again, up to attempts times. Any other error fails t.
func StartOnFreePorts(t testing.TB, name string, attempts int, pick, start func() error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		if err := pick(); err != nil {
			t.Fatal(err)
		}
		err := start()
		if err == nil {
			return
		}
		if attempt < attempts && errors.Is(err, ErrPortTaken) {
			t.Logf("%s: a port was taken before it was bound, picking others: %v", name, err)
			continue
		}
		t.Fatal(err)
	}
}
