package main

import (
	"fmt"
	"os/exec"
)

// needTool finds a host program or says which Debian package provides it.
// The harness installs nothing itself: it runs as root on shared machines,
// and silently changing the host is worse than a clear message.
func needTool(name, pkg string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found in PATH: install it with `apt-get install %s`", name, pkg)
	}
	return path, nil
}

// runTool runs a short host command and folds its output into the error,
// because apt and dpkg explain their failures on stderr.
func runTool(dir, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return out, fmt.Errorf("running %s %v: %w: %s", name, args, err, ee.Stderr)
		}
		return out, fmt.Errorf("running %s %v: %w", name, args, err)
	}
	return out, nil
}
