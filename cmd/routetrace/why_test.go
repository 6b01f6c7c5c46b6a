package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/internal/tiertest"
	"github.com/routetrace/routetrace/journal"
)

// whyJournal writes a journal holding one route networkd deleted, as
// `routetrace trace` would have, and returns its --state-dir.
func whyJournal(t *testing.T) string {
	t.Helper()
	state := t.TempDir()
	j, err := journal.Open(journal.Options{Dir: filepath.Join(state, "journal")})
	if err != nil {
		t.Fatal(err)
	}
	ev := &event.Event{
		Time: time.Now().Add(-time.Minute), Op: event.OpDelete, Object: event.ObjectRoute, Family: event.FamilyInet,
		Origin: event.OriginNetlink, Attach: event.AttachFentry, Dst: netip.MustParsePrefix("10.244.1.0/24"),
		Table: 254, Protocol: 12, Type: event.RouteTypeUnicast, Oif: 3, Netns: 4026531840,
		Actor: event.Actor{Pid: 305, Tgid: 305, PPid: 1, UID: 998, CgroupID: 1261},
	}
	ev.Dev.Set("nd0")
	ev.Actor.Comm.Set("systemd-network")
	if _, err := j.Append(ev.Time, event.AppendBinary(nil, ev)); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return state
}

func why(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	cmd := exec.Command(binary, append([]string{"why"}, args...)...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// Flags may come before or after the ADDRESS: the help's examples put them
// after (routetrace why 10.244.1.7 --since 6h), which is how people type
// them; urfave/cli alone stops reading flags at the first argument.
func TestWhyFlagsAfterAddress(t *testing.T) {
	tiertest.TierIndependent(t)
	state := whyJournal(t)
	for _, args := range [][]string{
		{"--state-dir", state, "--output", "json", "10.244.1.7"},
		{"10.244.1.7", "--state-dir", state, "--output", "json"},
		{"10.244.1.7", "--state-dir=" + state, "-o", "json", "--since", "6h"},
		{"--output", "json", "10.244.1.7", "--state-dir", state},
	} {
		out, stderr, err := why(args...)
		if err != nil {
			t.Errorf("why %s: %v: %s", strings.Join(args, " "), err, stderr)
			continue
		}
		var rep struct {
			Target  string `json:"target"`
			Answer  string `json:"answer"`
			Changes []struct {
				Match string `json:"match"`
				State string `json:"state"`
			} `json:"changes"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Errorf("why %s: not JSON: %v: %s", strings.Join(args, " "), err, out)
			continue
		}
		if rep.Target != "10.244.1.7" || rep.Answer != "found" || len(rep.Changes) != 1 ||
			rep.Changes[0].Match != "covers" || rep.Changes[0].State != "deleted" {
			t.Errorf("why %s: %s", strings.Join(args, " "), out)
		}
	}
	// Text, the default, with the flag after the address.
	out, stderr, err := why("10.244.1.7", "--state-dir", state)
	if err != nil || !strings.HasPrefix(out, "10.244.1.7: ") || !strings.Contains(out, "10.244.1.0/24") {
		t.Errorf("why 10.244.1.7 --state-dir: %v: %s%s", err, out, stderr)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"10.244.1.7", "10.244.1.8", "--state-dir", state}, "why needs one ADDRESS or PREFIX"},
		{[]string{"10.244.1.7", "--state-dir"}, "flag needs an argument: -state-dir"},
		{[]string{"10.244.1.7", "--no-such-flag", "--state-dir", state}, "no-such-flag"},
		{[]string{"10.244.1.7", "--output", "yaml", "--state-dir", state}, `--output "yaml"`},
	} {
		_, stderr, err := why(tc.args...)
		if err == nil || !strings.Contains(stderr, tc.want) {
			t.Errorf("why %s: err %v, stderr %q; want an error naming %s", strings.Join(tc.args, " "), err, stderr, tc.want)
		}
	}
}

// TestWhyHelpAfterAddress: `why ADDRESS --help` prints the help, as `why
// --help` does, instead of answering (it read the journal before).
func TestWhyHelpAfterAddress(t *testing.T) {
	tiertest.TierIndependent(t)
	for _, args := range [][]string{{"10.244.1.7", "--help"}, {"10.244.1.7", "-h"}, {"--help"}} {
		out, stderr, err := why(append(args, "--state-dir", t.TempDir())...)
		if err != nil || !strings.HasPrefix(out, "NAME:\n   routetrace why - ") {
			t.Errorf("why %s: %v, stdout %q, stderr %q; want the help", strings.Join(args, " "), err, out, stderr)
		}
	}
}
