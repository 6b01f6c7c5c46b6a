package exporter

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/routetrace/routetrace/event"
	"github.com/routetrace/routetrace/tracer"
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
			tt.s.SetLosses(tracer.Losses{Overruns: tt.lost})
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

func TestSummaryLosses(t *testing.T) {
	s := summaryOf(routeDelete())
	const zeros = "lost: ring records 0, overruns 0, truncated 0, unconfirmed 0, evicted 0, read errors 0, listener gaps 0, unlistened 0, kprobe misses 0"
	if got := s.LossLine(); got != zeros {
		t.Errorf("no losses:\n got  %q\n want %q", got, zeros)
	}
	s.SetLosses(tracer.Losses{RingRecords: 1, Overruns: 2, Truncated: 3, Unconfirmed: 4, Evicted: 5,
		ReadErrors: 6, ListenerGaps: 7, Unlistened: 8, KprobeMissed: 9})
	const all = "lost: ring records 1, overruns 2, truncated 3, unconfirmed 4, evicted 5, read errors 6, listener gaps 7, unlistened 8, kprobe misses 9"
	if got := s.LossLine(); got != all {
		t.Errorf("every counter:\n got  %q\n want %q", got, all)
	}
	if got, want := s.String(), "1 change by 1 process (systemd-network 1); 45 lost"; got != want {
		t.Errorf("String:\n got  %q\n want %q", got, want)
	}
	if s.Lost() != 45 {
		t.Errorf("Lost() = %d, want 45", s.Lost())
	}
}

// Every counter of tracer.Losses must be printed by name: a counter the
// tracer adds and the summary does not name would be lost silently (it
// would still count in the total, unexplained).
func TestLossCountersCoverLosses(t *testing.T) {
	typ := reflect.TypeFor[tracer.Losses]()
	for i := range typ.NumField() {
		var l tracer.Losses
		reflect.ValueOf(&l).Elem().Field(i).SetUint(1)
		var named []string
		for _, c := range lossCounters {
			if c.get(&l) == 1 {
				named = append(named, c.key)
			}
		}
		if len(named) != 1 || l.Total() != 1 {
			t.Errorf("tracer.Losses.%s: named by %v in the summary, Total %d; want one name, Total 1",
				typ.Field(i).Name, named, l.Total())
		}
	}
	if len(lossCounters) != typ.NumField() {
		t.Errorf("%d loss counters named, tracer.Losses has %d", len(lossCounters), typ.NumField())
	}
}

func TestSummaryJSON(t *testing.T) {
	ipAdd := routeDelete()
	ipAdd.Op, ipAdd.Actor = event.OpAdd, actor("ip", 4410, 0)
	s := summaryOf(routeDelete(), ruleDelete(), ipAdd, kernelDelete(), failedDelete(), uncapturedDelete())
	s.SetLosses(tracer.Losses{RingRecords: 3, Unconfirmed: 1})
	var out bytes.Buffer
	if err := s.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	const want = `{"summary":{"changes":5,"processes":4,"failed":1,` +
		`"by_op":{"delete":4,"add":1},"by_object":{"route":4,"rule":1},` +
		`"by_actor":{"systemd-network":2,"ip":1,"kernel":1,"unknown":1},"failed_by_errno":{"ESRCH":1},` +
		`"lost":{"ring_records":3,"overruns":0,"truncated":0,"unconfirmed":1,"evicted":0,"read_errors":0,"listener_gaps":0,"unlistened":0,"kprobe_missed":0},` +
		`"lost_total":4}}` + "\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	if !json.Valid(out.Bytes()) {
		t.Errorf("not valid JSON: %s", out.String())
	}

	out.Reset()
	if err := (&Summary{}).WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	const empty = `{"summary":{"changes":0,"processes":0,"failed":0,"by_op":{},"by_object":{},"by_actor":{},"failed_by_errno":{},` +
		`"lost":{"ring_records":0,"overruns":0,"truncated":0,"unconfirmed":0,"evicted":0,"read_errors":0,"listener_gaps":0,"unlistened":0,"kprobe_missed":0},` +
		`"lost_total":0}}` + "\n"
	if out.String() != empty {
		t.Errorf("empty summary:\n got  %s\n want %s", out.String(), empty)
	}
}
