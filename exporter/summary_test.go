package exporter

import (
	"errors"
	"testing"

	"github.com/routetrace/routetrace/event"
)

func summaryOf(evs ...*event.Event) *Summary {
	var s Summary
	for _, ev := range evs {
		_ = s.Write(ev)
	}
	return &s
}

func TestSummaryString(t *testing.T) {
	ipAdd := routeDelete()
	ipAdd.Op, ipAdd.Actor = event.OpAdd, actor("ip", 4410, 0)
	otherIP := ruleDelete()
	otherIP.Actor = actor("ip", 4411, 0)

	for _, tt := range []struct {
		name string
		s    *Summary
		lost uint64
		want string
	}{
		{"empty", summaryOf(), 0, "no changes seen; 0 lost"},
		{"only failures", summaryOf(failedDelete()), 2, "no changes seen; 1 failed; 2 lost"},
		{"singular", summaryOf(routeDelete()), 0, "1 change by 1 process (systemd-network 1); 0 lost"},
		{"brief example", summaryOf(routeDelete(), ruleDelete(), ipAdd, failedDelete()), 0,
			"3 changes by 2 processes (systemd-network 2, ip 1); 1 failed; 0 lost"},
		{"processes are pids", summaryOf(ipAdd, otherIP), 0, "2 changes by 2 processes (ip 2); 0 lost"},
		{"kernel and flush", summaryOf(kernelDelete(), flushRecord(), ipAdd), 5,
			"1002 changes by 2 processes (kernel 1001, ip 1); 5 lost"},
		{"ties by name", summaryOf(nexthopAdd(), ipAdd), 0, "2 changes by 2 processes (ip 1, zebra 1); 0 lost"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.s.SetLost(tt.lost)
			if got := tt.s.String(); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestSummaryDetail(t *testing.T) {
	if got := summaryOf().Detail(); got != "" {
		t.Errorf("empty Detail = %q", got)
	}
	ipAdd := routeDelete()
	ipAdd.Op, ipAdd.Actor = event.OpAdd, actor("ip", 4410, 0)
	s := summaryOf(routeDelete(), ruleDelete(), ipAdd, nexthopAdd(), failedDelete(), failedDelete())
	want := "by operation: add 2, delete 2\n" +
		"by object: route 2, nexthop 1, rule 1\n" +
		"by actor: systemd-network 2, ip 1, zebra 1\n" +
		"failed: ESRCH 2"
	if got := s.Detail(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

type recorder struct {
	n      int
	err    error
	closed bool
}

func (r *recorder) Write(*event.Event) error { r.n++; return r.err }
func (r *recorder) Close() error             { r.closed = true; return r.err }

func TestMulti(t *testing.T) {
	broken := errors.New("broken pipe")
	a, b, c := &recorder{}, &recorder{err: broken}, &recorder{}
	m := Multi(a, b, c)
	if err := m.Write(routeDelete()); !errors.Is(err, broken) {
		t.Errorf("Write error %v", err)
	}
	if a.n != 1 || b.n != 1 || c.n != 1 {
		t.Errorf("writes %d %d %d", a.n, b.n, c.n)
	}
	if err := m.Close(); !errors.Is(err, broken) || !a.closed || !c.closed {
		t.Errorf("Close error %v, closed %v %v", err, a.closed, c.closed)
	}
	if err := Multi(a, c).Write(routeDelete()); err != nil {
		t.Errorf("healthy sinks: %v", err)
	}
}
