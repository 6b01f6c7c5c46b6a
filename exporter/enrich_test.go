package exporter

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/routetrace/routetrace/event"
)

var (
	calicoPod = &event.Pod{Name: "calico-node-x7k2p", Namespace: "kube-system", UID: "0b5e8f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"}
	webPod    = &event.Pod{Name: "web-7d9f", Namespace: "shop", UID: "9f8e7d6c-5b4a-4321-9876-543210fedcba",
		IPs: []netip.Addr{netip.MustParseAddr("10.244.3.17")}}
	calicoProc = &event.Process{
		Exe: "/usr/bin/calico-node", Cmdline: []string{"calico-node", "-felix"},
		Cgroup: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b5e8f3a_1c2d_4e5f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-" +
			"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.scope",
		CgroupHierarchy: "cgroup2",
		ContainerID:     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		Runtime:         "containerd", PodUID: calicoPod.UID, QoS: "burstable",
		Container: &event.Container{ID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
			Name: "calico-node", Image: "calico/node:v3.28.0", Pod: calicoPod},
	}
	networkdProc = &event.Process{
		Exe: "/usr/lib/systemd/systemd-networkd", Cmdline: []string{"/usr/lib/systemd/systemd-networkd"},
		Cgroup: "/system.slice/systemd-networkd.service", CgroupHierarchy: "cgroup2", Unit: "systemd-networkd.service",
	}
	caliLink = &event.Link{Name: "cali1a2b", Kind: "veth", CNI: "calico"}
)

func enrichedDelete(p *event.Process) *event.Event {
	ev := routeDelete()
	ev.Dst = netip.MustParsePrefix("10.244.3.17/32")
	ev.Actor.Process = p
	ev.Victim = event.Victim{Link: caliLink, Pod: webPod}
	return ev
}

func TestJSONEnrichment(t *testing.T) {
	var got map[string]any
	if err := json.Unmarshal([]byte(jsonLine(t, enrichedDelete(calicoProc))), &got); err != nil {
		t.Fatal(err)
	}
	actor := got["actor"].(map[string]any)
	for k, want := range map[string]any{
		"exe": "/usr/bin/calico-node", "cmdline": []any{"calico-node", "-felix"},
		"cgroup": calicoProc.Cgroup, "cgroup_hierarchy": "cgroup2",
		"container_id": calicoProc.ContainerID, "runtime": "containerd", "qos": "burstable",
		"pod": map[string]any{"name": "calico-node-x7k2p", "namespace": "kube-system", "uid": calicoPod.UID,
			"container": "calico-node", "image": "calico/node:v3.28.0"},
	} {
		if !reflect.DeepEqual(actor[k], want) {
			t.Errorf("actor.%s = %#v, want %#v", k, actor[k], want)
		}
	}
	for _, k := range []string{"unit", "enrich_error"} {
		if _, ok := actor[k]; ok {
			t.Errorf("actor.%s present, want it absent (unknown is never guessed)", k)
		}
	}
	wantVictim := map[string]any{"link": "cali1a2b", "link_kind": "veth", "cni": "calico",
		"pod": map[string]any{"name": "web-7d9f", "namespace": "shop", "uid": webPod.UID}}
	if !reflect.DeepEqual(got["victim"], wantVictim) {
		t.Errorf("victim = %#v, want %#v", got["victim"], wantVictim)
	}
	// The old names stay.
	if actor["comm"] != "systemd-network" || actor["pid"] != 812.0 || got["dev"] != "cali1a2b" {
		t.Errorf("old fields changed: %v", got)
	}
}

func TestJSONEnrichmentPartial(t *testing.T) {
	// A container the pod sources did not know: the ids from the cgroup
	// path, the failure said, no pod name guessed.
	p := *calicoProc
	p.Container = nil
	p.EnrichError = "container not known to cri"
	ev := routeDelete()
	ev.Actor.Process = &p
	ev.Victim = event.Victim{Pods: 3}
	var got map[string]any
	if err := json.Unmarshal([]byte(jsonLine(t, ev)), &got); err != nil {
		t.Fatal(err)
	}
	actor := got["actor"].(map[string]any)
	if want := map[string]any{"uid": calicoPod.UID}; !reflect.DeepEqual(actor["pod"], want) {
		t.Errorf("actor.pod = %#v, want %#v", actor["pod"], want)
	}
	if actor["enrich_error"] != "container not known to cri" {
		t.Errorf("enrich_error = %#v", actor["enrich_error"])
	}
	if want := map[string]any{"pods": 3.0}; !reflect.DeepEqual(got["victim"], want) {
		t.Errorf("victim = %#v, want %#v", got["victim"], want)
	}
	// Nothing known: no victim object at all.
	var plain map[string]any
	if line := jsonLine(t, routeDelete()); json.Unmarshal([]byte(line), &plain) != nil || plain["victim"] != nil {
		t.Errorf("unenriched event has a victim: %s", line)
	}
}

func TestTextEnrichment(t *testing.T) {
	tests := []struct {
		name string
		ev   *event.Event
		want string
	}{
		{"pod actor, pod victim", enrichedDelete(calicoProc),
			"15:04:05.123  delete  route    10.244.3.17 dev cali1a2b table main proto bird [calico veth] pod shop/web-7d9f  kube-system/calico-node-x7k2p (calico-node) systemd-network[812] uid=101  ok"},
		{"unit actor", enrichedDelete(networkdProc),
			"15:04:05.123  delete  route    10.244.3.17 dev cali1a2b table main proto bird [calico veth] pod shop/web-7d9f  systemd-networkd.service systemd-network[812] uid=101  ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := textLine(t, TextOptions{Location: time.UTC}, tt.ev); got != tt.want+"\n" {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want+"\n")
			}
		})
	}
}

func TestEnrichedWriteAllocs(t *testing.T) {
	ev := enrichedDelete(calicoProc)
	j := NewJSONWithOptions(discard{}, JSONOptions{})
	tx := NewText(discard{}, TextOptions{Location: time.UTC})
	j.Write(ev)
	tx.Write(ev)
	if n := testing.AllocsPerRun(100, func() { j.Write(ev); tx.Write(ev) }); n != 0 {
		t.Errorf("writing an enriched event allocates %.0f times, want 0", n)
	}
}
