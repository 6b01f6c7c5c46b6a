package forensics

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/routetrace/routetrace/event"
)

// The JSON form of a report. Field names are a public interface, like
// those of `routetrace trace --output json` (whose names the events here
// reuse): fields may be added, never renamed.

type reportJSON struct {
	Target        string       `json:"target"`
	Now           string       `json:"now"`
	Answer        string       `json:"answer"` // "found" or "nothing"
	EventsScanned int          `json:"events_scanned"`
	EventsFailed  int          `json:"events_failed"`
	Undecodable   int          `json:"undecodable"`
	BeforeSince   int          `json:"events_before_since"`
	Since         string       `json:"since,omitempty"`
	JournalFrom   string       `json:"journal_from,omitempty"`
	JournalTo     string       `json:"journal_to,omitempty"`
	NotKept       int          `json:"objects_not_kept"`
	Changes       []changeJSON `json:"changes"`
	Advice        []adviceJSON `json:"advice"`
}

type changeJSON struct {
	Match       string       `json:"match"`
	State       string       `json:"state"` // "deleted", "back", "added"
	Description string       `json:"description"`
	Seen        int          `json:"changes_seen"`
	Last        eventJSON    `json:"last"`
	Burst       burstJSON    `json:"burst"`
	Removal     *removalJSON `json:"removal,omitempty"`
}

type removalJSON struct {
	Event eventJSON `json:"event"`
	Burst burstJSON `json:"burst"`
}

type eventJSON struct {
	Time     string     `json:"time"`
	Op       string     `json:"op"`
	Object   string     `json:"object"`
	Family   string     `json:"family"`
	Table    uint32     `json:"table"`
	Origin   string     `json:"origin"`
	Path     string     `json:"path,omitempty"`
	Netns    uint32     `json:"netns"`
	Dst      string     `json:"dst,omitempty"`
	Src      string     `json:"src,omitempty"`
	Gateway  string     `json:"gateway,omitempty"`
	Dev      string     `json:"dev,omitempty"`
	Oif      uint32     `json:"oif,omitempty"`
	Protocol string     `json:"protocol,omitempty"`
	Type     string     `json:"type,omitempty"`
	Metric   *uint32    `json:"metric,omitempty"`
	Priority *uint32    `json:"priority,omitempty"`
	Iif      string     `json:"iif,omitempty"`
	OifName  string     `json:"oif_name,omitempty"`
	CNI      string     `json:"cni,omitempty"`
	Pod      *podJSON   `json:"pod,omitempty"` // the victim pod
	Actor    actorJSON  `json:"actor"`
	Cause    *causeJSON `json:"cause,omitempty"`
	// Responsible is who the change counts toward: the actor, or the
	// cause's actor for a kernel removal. Its name in the user's terms.
	Responsible string `json:"responsible"`
}

type actorJSON struct {
	Kernel      bool     `json:"kernel,omitempty"`
	Unknown     bool     `json:"unknown,omitempty"`
	Pid         uint32   `json:"pid,omitempty"`
	Tid         uint32   `json:"tid,omitempty"`
	Comm        string   `json:"comm,omitempty"`
	PPid        uint32   `json:"ppid,omitempty"`
	PComm       string   `json:"pcomm,omitempty"`
	UID         *uint32  `json:"uid,omitempty"`
	CgroupID    uint64   `json:"cgroup_id,omitempty"`
	Enriched    bool     `json:"enriched"`
	Unit        string   `json:"unit,omitempty"`
	Exe         string   `json:"exe,omitempty"`
	Cmdline     []string `json:"cmdline,omitempty"`
	Cgroup      string   `json:"cgroup,omitempty"`
	ContainerID string   `json:"container_id,omitempty"`
	Runtime     string   `json:"runtime,omitempty"`
	Pod         *podJSON `json:"pod,omitempty"`
	EnrichError string   `json:"enrich_error,omitempty"`
}

type podJSON struct {
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	UID       string `json:"uid,omitempty"`
	Container string `json:"container,omitempty"`
}

type causeJSON struct {
	Object  string    `json:"object"`
	Op      string    `json:"op"`
	Ifindex uint32    `json:"ifindex,omitempty"`
	Prefix  string    `json:"prefix,omitempty"`
	Actor   actorJSON `json:"actor"`
	Text    string    `json:"text"`
}

type burstJSON struct {
	Start          string   `json:"start"`
	End            string   `json:"end"`
	SpanSeconds    float64  `json:"span_seconds"`
	Removals       int      `json:"removals"`
	Routes         opsJSON  `json:"routes"`
	Rules          opsJSON  `json:"rules"`
	RoutesByKernel int      `json:"routes_by_kernel"`
	RulesByKernel  int      `json:"rules_by_kernel"`
	Addresses      []string `json:"addresses_deleted,omitempty"`
}

type opsJSON struct {
	Add     int `json:"add"`
	Replace int `json:"replace"`
	Delete  int `json:"delete"`
	Flush   int `json:"flush"`
}

type adviceJSON struct {
	Actor string   `json:"actor"`
	Why   string   `json:"why"`
	Steps []string `json:"steps"`
}

// jsonTime is the trace output's layout: RFC 3339, nanoseconds, UTC.
const jsonTime = "2006-01-02T15:04:05.000000000Z07:00"

func stampJSON(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(jsonTime)
}

// WriteJSON writes the report as one JSON object and a newline.
func (r *Report) WriteJSON(w io.Writer) error {
	out := reportJSON{
		Target: targetText(r.Target), Now: stampJSON(r.Now), Answer: "nothing",
		EventsScanned: r.EventsScanned, EventsFailed: r.EventsFailed, Undecodable: r.Undecodable,
		BeforeSince: r.EventsBeforeSince, Since: stampJSON(r.Since),
		JournalFrom: stampJSON(r.From), JournalTo: stampJSON(r.To), NotKept: r.ObjectsNotKept,
		Changes: []changeJSON{}, Advice: []adviceJSON{},
	}
	if len(r.Changes) > 0 {
		out.Answer = "found"
	}
	for i := range r.Changes {
		c := &r.Changes[i]
		cj := changeJSON{Match: string(c.Match), State: "added", Description: describe(&c.Event), Seen: c.Seen,
			Last: eventToJSON(&c.Event), Burst: burstToJSON(&c.Burst)}
		switch {
		case c.Removed():
			cj.State = "deleted"
		case c.Back():
			cj.State = "back"
			cj.Removal = &removalJSON{Event: eventToJSON(&c.Removal.Event), Burst: burstToJSON(&c.Removal.Burst)}
		}
		out.Changes = append(out.Changes, cj)
	}
	for _, a := range r.Advice {
		out.Advice = append(out.Advice, adviceJSON{Actor: a.Actor, Why: a.Why, Steps: a.Steps})
	}
	b, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

func eventToJSON(ev *event.Event) eventJSON {
	j := eventJSON{
		Time: stampJSON(ev.Time), Op: ev.Op.String(), Object: ev.Object.String(),
		Family: event.FamilyName(ev.Family), Table: ev.Table, Origin: ev.Origin.String(),
		Netns: ev.Netns, Dev: ev.Dev.String(), Oif: ev.Oif,
		Actor: actorToJSON(&ev.Actor, ev.Origin == event.OriginKernel),
	}
	if ev.Path != event.PathNone {
		j.Path = ev.Path.String()
	}
	if ev.Object == event.ObjectRoute {
		j.Dst = routeDst(ev).String()
		j.Type = event.RouteTypeName(ev.Type)
		m := ev.Priority
		j.Metric = &m
	} else {
		if ev.Dst.IsValid() {
			j.Dst = ev.Dst.String()
		}
		p := ev.Priority
		j.Priority = &p
		j.Iif, j.OifName = ev.IifName.String(), ev.OifName.String()
	}
	if ev.Src.IsValid() {
		j.Src = ev.Src.String()
	}
	if ev.Gateway.IsValid() {
		j.Gateway = ev.Gateway.String()
	}
	if ev.Protocol != 0 {
		j.Protocol = event.ProtocolName(ev.Protocol)
	}
	if l := ev.Victim.Link; l != nil {
		j.CNI = l.CNI
	}
	if p := ev.Victim.Pod; p != nil {
		j.Pod = &podJSON{Name: p.Name, Namespace: p.Namespace, UID: p.UID}
	}
	if c := &ev.Cause; c.Valid {
		cj := &causeJSON{Object: c.Object.String(), Op: c.Op.String(), Ifindex: c.Ifindex,
			Actor: actorToJSON(&c.Actor, false), Text: causeText(ev)}
		if c.Prefix.IsValid() {
			cj.Prefix = c.Prefix.String()
		}
		j.Cause = cj
	}
	a := responsible(ev)
	switch k := keyOf(a, ev.Origin); {
	case k.kernel:
		j.Responsible = "kernel"
	case k.unknown:
		j.Responsible = "unknown"
	default:
		j.Responsible = processName(a)
	}
	return j
}

func actorToJSON(a *event.Actor, kernelOrigin bool) actorJSON {
	if a.Kernel || (kernelOrigin && a.Tgid == 0) {
		return actorJSON{Kernel: true}
	}
	if a.Unknown() {
		return actorJSON{Unknown: true}
	}
	uid := a.UID
	j := actorJSON{Pid: a.Tgid, Tid: a.Pid, Comm: a.Comm.String(), PPid: a.PPid, PComm: a.PComm.String(),
		UID: &uid, CgroupID: a.CgroupID}
	if p := a.Process; p != nil {
		j.Enriched = true
		j.Unit, j.Exe, j.Cmdline, j.Cgroup = p.Unit, p.Exe, p.Cmdline, p.Cgroup
		j.ContainerID, j.Runtime, j.EnrichError = p.ContainerID, p.Runtime, p.EnrichError
		if c := p.Container; c != nil && c.Pod != nil {
			j.Pod = &podJSON{Name: c.Pod.Name, Namespace: c.Pod.Namespace, UID: c.Pod.UID, Container: c.Name}
		} else if p.PodUID != "" {
			j.Pod = &podJSON{UID: p.PodUID}
		}
	}
	return j
}

func burstToJSON(b *Burst) burstJSON {
	ops := func(o OpCounts) opsJSON { return opsJSON{o.Add, o.Replace, o.Delete, o.Flush} }
	j := burstJSON{
		Start: stampJSON(b.Start), End: stampJSON(b.End), SpanSeconds: b.Span().Seconds(),
		Removals: b.Removals(), Routes: ops(b.Routes), Rules: ops(b.Rules),
		RoutesByKernel: b.RoutesByKernel, RulesByKernel: b.RulesByKernel,
	}
	for _, a := range b.Addresses {
		s := a.Prefix.String()
		if a.Ifindex != 0 {
			s += fmt.Sprintf(" ifindex %d", a.Ifindex)
		}
		j.Addresses = append(j.Addresses, s)
	}
	return j
}
