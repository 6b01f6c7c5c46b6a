package exporter

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
)

// An actor the tracer did not capture (not the kernel, pid 0) is shown as
// unknown: "?[0] uid=0" read as a process of root's, and a JSON actor of
// zeros as pid 0, uid 0.
func TestUnknownActor(t *testing.T) {
	ev := uncapturedDelete()
	const wantText = "15:04:05.123  delete  route    10.244.3.0/24 dev cali1a2b table main proto bird      unknown                        ok\n"
	if got := textLine(t, TextOptions{Location: time.UTC}, ev); got != wantText {
		t.Errorf("text:\n got  %q\n want %q", got, wantText)
	}

	line := jsonLine(t, ev)
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	actor, _ := m["actor"].(map[string]any)
	if len(actor) != 1 || actor["unknown"] != true {
		t.Errorf("json actor %v, want exactly {\"unknown\":true}\n%s", m["actor"], line)
	}
	if !strings.Contains(line, `"actor":{"unknown":true}`) {
		t.Errorf("json line has no actor {\"unknown\":true}:\n%s", line)
	}

	// A comm the tracer did learn is kept; still no pid or uid.
	ev.Actor.Comm.Set("bird")
	actor = nil
	if err := json.Unmarshal([]byte(jsonLine(t, ev)), &struct{ Actor *map[string]any }{&actor}); err != nil {
		t.Fatal(err)
	}
	if len(actor) != 2 || actor["unknown"] != true || actor["comm"] != "bird" {
		t.Errorf("json actor %v, want unknown and comm bird only", actor)
	}

	s := summaryOf(uncapturedDelete(), uncapturedDelete(), routeDelete())
	if got, want := s.String(), "3 changes by 2 processes (unknown 2, systemd-network 1); 0 lost"; got != want {
		t.Errorf("summary:\n got  %q\n want %q", got, want)
	}
}

// A kernel removal caused by a request whose actor is unknown says so,
// rather than "by ?[0]".
func TestUnknownCauseActor(t *testing.T) {
	ev := linkDownDelete()
	ev.Cause.Actor = event.Actor{}
	const want = "15:04:05.123  delete  route    default via 192.0.2.254 dev eth0 table main proto dhcp metric 100  kernel via fib_netdev_event (link 3 down by unknown)  ok\n"
	if got := textLine(t, TextOptions{Location: time.UTC}, ev); got != want {
		t.Errorf("text:\n got  %q\n want %q", got, want)
	}
	var m struct {
		Cause struct{ Actor map[string]any }
	}
	if err := json.Unmarshal([]byte(jsonLine(t, ev)), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Cause.Actor) != 1 || m.Cause.Actor["unknown"] != true {
		t.Errorf("json cause actor %v, want exactly {\"unknown\":true}", m.Cause.Actor)
	}
}
