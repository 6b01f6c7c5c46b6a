package event

import "testing"

func TestFilterEnriched(t *testing.T) {
	calico := &Pod{Name: "calico-node-x7k2p", Namespace: "kube-system", UID: "u1"}
	web := &Pod{Name: "web-7d9f", Namespace: "shop", UID: "u2"}
	const id = "aaaaaaaaaaaabbbbbbbbbbbbccccccccccccddddddddddddeeeeeeeeeeeeffff"
	inPod := &Event{
		Actor:  Actor{Tgid: 10, Process: &Process{ContainerID: id, Container: &Container{ID: id, Name: "calico-node", Pod: calico}}},
		Victim: Victim{Link: &Link{Name: "cali1", Kind: "veth", CNI: "calico"}, Pod: web},
	}
	networkd := &Event{Actor: Actor{Tgid: 11, Process: &Process{Unit: "systemd-networkd.service"}}}
	// A kernel removal is matched by the actor of its cause.
	flushed := &Event{Actor: Actor{Kernel: true}, Cause: Cause{Valid: true, Actor: networkd.Actor}}
	plain := &Event{Actor: Actor{Tgid: 12}}

	tests := []struct {
		name string
		f    Filter
		want [4]bool // inPod, networkd, flushed, plain
	}{
		{"unit", Filter{Units: []string{"systemd-networkd.service"}}, [4]bool{false, true, true, false}},
		{"unit glob", Filter{Units: []string{"systemd-*"}}, [4]bool{false, true, true, false}},
		{"actor pod", Filter{Pods: []string{"kube-system/calico-node-*"}}, [4]bool{true, false, false, false}},
		{"victim pod", Filter{Pods: []string{"shop/web-7d9f"}}, [4]bool{true, false, false, false}},
		{"bare pod name", Filter{Pods: []string{"web-*"}}, [4]bool{true, false, false, false}},
		{"wrong namespace", Filter{Pods: []string{"default/web-7d9f"}}, [4]bool{false, false, false, false}},
		{"container name", Filter{Containers: []string{"calico-node"}}, [4]bool{true, false, false, false}},
		{"container id prefix", Filter{Containers: []string{"aaaaaaaaaaaa"}}, [4]bool{true, false, false, false}},
		{"short id prefix is no match", Filter{Containers: []string{"aaaa"}}, [4]bool{false, false, false, false}},
		{"cni", Filter{CNIs: []string{"calico"}}, [4]bool{true, false, false, false}},
		{"cni other", Filter{CNIs: []string{"cilium"}}, [4]bool{false, false, false, false}},
		{"all of them", Filter{Units: []string{"x"}, CNIs: []string{"calico"}}, [4]bool{false, false, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, ev := range []*Event{inPod, networkd, flushed, plain} {
				if got := tt.f.Match(ev); got != tt.want[i] {
					t.Errorf("event %d: Match = %v, want %v", i, got, tt.want[i])
				}
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() {
		f := Filter{Pods: []string{"kube-system/calico-node-*"}, CNIs: []string{"calico"}}
		f.Match(inPod)
	}); n != 0 {
		t.Errorf("Match allocates %.0f times", n)
	}
	if ValidGlob("[") == nil {
		t.Error("ValidGlob accepts a malformed pattern")
	}
}
