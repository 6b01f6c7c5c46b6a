package enrich

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfs(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestConfiguredCNI(t *testing.T) {
	for _, tc := range []struct {
		what  string
		files map[string]string
		want  string
	}{
		{"calico conflist", map[string]string{"10-calico.conflist": `{"name":"k8s-pod-network","cniVersion":"0.3.1","plugins":[{"type":"calico","ipam":{"type":"calico-ipam"}},{"type":"portmap","capabilities":{"portMappings":true}},{"type":"bandwidth"}]}`}, "calico"},
		{"cilium", map[string]string{"05-cilium.conflist": `{"cniVersion":"0.3.1","name":"cilium","plugins":[{"type":"cilium-cni","enable-debug":false}]}`}, "cilium"},
		{"cilium .conf", map[string]string{"05-cilium.conf": `{"cniVersion":"0.3.1","name":"cilium","type":"cilium-cni"}`}, "cilium"},
		{"flannel", map[string]string{"10-flannel.conflist": `{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}`}, "flannel"},
		{"aws", map[string]string{"10-aws.conflist": `{"cniVersion":"0.4.0","name":"aws-cni","plugins":[{"name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001"},{"name":"egress-cni","type":"egress-cni"},{"type":"portmap","capabilities":{"portMappings":true},"snat":true}]}`}, "aws-vpc-cni"},
		{"weave", map[string]string{"10-weave.conflist": `{"cniVersion":"0.3.0","name":"weave","plugins":[{"name":"weave","type":"weave-net","hairpinMode":true},{"type":"portmap","capabilities":{"portMappings":true},"snat":true}]}`}, "weave"},
		{"kube-router", map[string]string{"10-kuberouter.conflist": `{"cniVersion":"0.3.0","name":"mynet","plugins":[{"name":"kubernetes","type":"bridge","bridge":"kube-bridge","isDefaultGateway":true,"ipam":{"type":"host-local"}},{"type":"portmap","capabilities":{"snat":true,"portMappings":true}}]}`}, "kube-router"},
		{"kindnet", map[string]string{"10-kindnet.conflist": `{"cniVersion":"0.3.1","name":"kindnet","plugins":[{"type":"ptp","ipMasq":false,"ipam":{"type":"host-local"},"mtu":1500},{"type":"portmap","capabilities":{"portMappings":true}}]}`}, "kindnet"},
		{"antrea", map[string]string{"10-antrea.conflist": `{"cniVersion":"0.3.0","name":"antrea","plugins":[{"type":"antrea","ipam":{"type":"host-local"}},{"type":"portmap","capabilities":{"portMappings":true}},{"type":"bandwidth","capabilities":{"bandwidth":true}}]}`}, "antrea"},
		{"ovn-kubernetes", map[string]string{"10-ovn-kubernetes.conf": `{"cniVersion":"0.4.0","name":"ovn-kubernetes","type":"ovn-k8s-cni-overlay","ipam":{},"dns":{}}`}, "ovn-kubernetes"},
		{"plain bridge (containerd's example)", map[string]string{"10-containerd-net.conflist": `{"cniVersion":"1.0.0","name":"containerd-net","plugins":[{"type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":true,"ipam":{"type":"host-local"}},{"type":"portmap","capabilities":{"portMappings":true}}]}`}, "bridge"},
		{"plain ptp", map[string]string{"10-ptp.conf": `{"cniVersion":"0.3.1","name":"net","type":"ptp","ipam":{"type":"host-local"}}`}, "ptp"},
		{"a .json single plugin", map[string]string{"99-macvlan.json": `{"cniVersion":"0.3.1","name":"m","type":"macvlan","master":"eth0"}`}, "macvlan"},
		{"the lexically first wins", map[string]string{
			"20-bridge.conflist": `{"name":"b","plugins":[{"type":"bridge"}]}`,
			"10-calico.conflist": `{"name":"k8s-pod-network","plugins":[{"type":"calico"}]}`,
			"00-README":          `not a config`,
		}, "calico"},
		{"a later broken file is not read", map[string]string{
			"10-calico.conflist": `{"name":"k8s-pod-network","plugins":[{"type":"calico"}]}`,
			"99-bad.conf":        `{`,
		}, "calico"},
		{"no config yet", map[string]string{"calico-kubeconfig": `apiVersion: v1`}, ""},
	} {
		got, err := ConfiguredCNI(writeConfs(t, tc.files))
		if err != nil || got != tc.want {
			t.Errorf("%s: ConfiguredCNI = %q, %v; want %q", tc.what, got, err, tc.want)
		}
	}
	if got, err := ConfiguredCNI(filepath.Join(t.TempDir(), "missing")); got != "" || err != nil {
		t.Errorf("missing directory: %q, %v; want \"\", nil", got, err)
	}
}

func TestConfiguredCNIErrors(t *testing.T) {
	for _, tc := range []struct {
		what, file, body string
		want             []string // substrings of the error
	}{
		{"syntax", "10-x.conflist", "{\n  \"name\": \"x\",\n  \"plugins\": [\n    {\"type\": \"calico\",}\n  ]\n}", []string{"10-x.conflist", "line 4, column 23", "byte 55", "invalid character '}'"}},
		{"type", "10-x.conf", `{"name":"x","type":7}`, []string{"10-x.conf", "line 1", "cannot unmarshal number"}},
		{"plugins not a list", "10-x.conflist", `{"name":"x","plugins":{"type":"calico"}}`, []string{"10-x.conflist", "plugins", "cannot unmarshal object"}},
		{"empty list", "10-x.conflist", `{"name":"x","plugins":[]}`, []string{"10-x.conflist", "no plugins"}},
		{"no type", "10-x.conf", `{"name":"x"}`, []string{"10-x.conf", "no plugin type"}},
		{"empty file", "10-x.conf", ``, []string{"10-x.conf", "malformed JSON"}},
	} {
		dir := writeConfs(t, map[string]string{tc.file: tc.body})
		_, err := ConfiguredCNI(dir)
		if err == nil {
			t.Errorf("%s: no error", tc.what)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", tc.what, err, w)
			}
		}
		if !strings.Contains(err.Error(), filepath.Join(dir, tc.file)) {
			t.Errorf("%s: error %q does not name the file's path", tc.what, err)
		}
	}
}

func TestClassifyLink(t *testing.T) {
	for _, tc := range []struct {
		configured, name, kind, want string
	}{
		{"", "cali1234abcd", "veth", "calico"},
		{"", "calia1b2c3d4e5f", "veth", "calico"},
		{"", "cali1234abcd", "", ""},         // not a veth: not Calico's
		{"", "calico", "veth", ""},           // not hex
		{"", "cali1234abcdef01", "veth", ""}, // longer than Calico makes
		{"", "vxlan.calico", "vxlan", "calico"},
		{"", "vxlan-v6.calico", "vxlan", "calico"},
		{"", "wireguard.cali", "wireguard", "calico"},
		{"", "tunl0", "ipip", ""},
		{"calico", "tunl0", "ipip", "calico"},
		{"cilium", "tunl0", "ipip", ""},
		{"", "lxc12ab", "veth", "cilium"},
		{"", "lxc_health", "veth", "cilium"},
		{"", "lxcbr0", "bridge", ""}, // LXC's bridge
		{"", "lxcbr0", "veth", ""},
		{"", "cilium_host", "veth", "cilium"},
		{"", "cilium_net", "veth", "cilium"},
		{"", "cilium_vxlan", "vxlan", "cilium"},
		{"", "cilium_geneve", "geneve", "cilium"},
		{"", "cilium_wg0", "wireguard", "cilium"},
		{"", "flannel.1", "vxlan", "flannel"},
		{"", "flannel.42", "vxlan", "flannel"},
		{"", "flannel.", "vxlan", ""},
		{"", "flannel-wg", "wireguard", "flannel"},
		{"", "cni0", "bridge", ""},
		{"flannel", "cni0", "bridge", "flannel"},
		{"bridge", "cni0", "bridge", "bridge"},
		{"calico", "cni0", "bridge", ""},
		{"", "eni1a2b3c4d5e6", "veth", "aws-vpc-cni"},
		{"", "eni1a2b", "veth", ""},
		{"", "weave", "bridge", "weave"},
		{"", "vethwe-bridge", "veth", "weave"},
		{"", "vethwepl1234", "veth", "weave"},
		{"", "datapath", "openvswitch", "weave"},
		{"", "kube-bridge", "bridge", "kube-router"},
		{"", "kube-dummy-if", "dummy", "kube-router"},
		{"", "antrea-gw0", "openvswitch", "antrea"},
		{"", "ovn-k8s-mp0", "openvswitch", "ovn-kubernetes"},
		{"ptp", "veth1a2b3c4d", "veth", "ptp"},
		{"kindnet", "veth1a2b3c4d", "veth", "kindnet"},
		{"flannel", "veth1a2b3c4d", "veth", "flannel"},
		{"calico", "veth1a2b3c4d", "veth", ""},
		{"", "veth1a2b3c4d", "veth", ""},
		{"ptp", "vethXa2b3c4d", "veth", ""},
		{"ptp", "v0", "veth", ""},
		{"", "eth0", "", ""},
		{"", "lo", "", ""},
	} {
		if got := ClassifyLinkFor(tc.configured, tc.name, tc.kind); got != tc.want {
			t.Errorf("ClassifyLinkFor(%q, %q, %q) = %q, want %q", tc.configured, tc.name, tc.kind, got, tc.want)
		}
		if tc.configured == "" {
			if got := ClassifyLink(tc.name, tc.kind); got != tc.want {
				t.Errorf("ClassifyLink(%q, %q) = %q, want %q", tc.name, tc.kind, got, tc.want)
			}
		}
	}
}

// FuzzClassifyLink: never panics; an answer is one of the known names;
// the configured CNI only ever adds to ClassifyLink's answer.
func FuzzClassifyLink(f *testing.F) {
	f.Add("", "cali1234abcd", "veth")
	f.Add("calico", "tunl0", "ipip")
	f.Add("flannel", "cni0", "bridge")
	f.Add("ptp", "veth1a2b3c4d", "veth")
	f.Add("", "lxc12ab", "veth")
	f.Add("", "flannel.1", "vxlan")
	known := map[string]bool{"": true, "calico": true, "cilium": true, "flannel": true, "aws-vpc-cni": true, "weave": true,
		"kube-router": true, "antrea": true, "ovn-kubernetes": true, "bridge": true, "ptp": true, "kindnet": true}
	f.Fuzz(func(t *testing.T, configured, name, kind string) {
		plain := ClassifyLink(name, kind)
		with := ClassifyLinkFor(configured, name, kind)
		if !known[plain] || !known[with] {
			t.Fatalf("unknown CNI %q / %q", plain, with)
		}
		if plain != "" && with != plain {
			t.Fatalf("configured %q changed %q to %q", configured, plain, with)
		}
		if with != plain && with != configured && with != "calico" {
			t.Fatalf("ClassifyLinkFor(%q, %q, %q) = %q: neither the name's nor the configured CNI", configured, name, kind, with)
		}
	})
}

// FuzzCNIName: a config's bytes never panic the parser, and an answer
// without an error is a non-empty name.
func FuzzCNIName(f *testing.F) {
	f.Add([]byte(`{"name":"k8s-pod-network","plugins":[{"type":"calico"},{"type":"portmap"}]}`))
	f.Add([]byte(`{"name":"x","type":"ptp"}`))
	f.Add([]byte(`{"plugins":null,"type":"bridge","bridge":"kube-bridge"}`))
	f.Add([]byte("{\n\"a\":"))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, err := cniName(b)
		if err == nil && name == "" {
			t.Fatal("no name and no error")
		}
	})
}
