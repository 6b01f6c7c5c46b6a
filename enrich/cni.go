package enrich

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultCNIDir is where the kubelet's runtime reads network configs.
const DefaultCNIDir = "/etc/cni/net.d"

// ConfiguredCNI names the CNI plugin the container runtime would use on
// this node: the lexically first *.conf, *.conflist or *.json in dir
// (DefaultCNIDir when ""), as containerd's go-cni and CRI-O's ocicni pick
// it. The name comes from the plugin types in it: calico, cilium,
// flannel, aws-vpc-cni, weave, kube-router, antrea, ovn-kubernetes,
// kindnet, multus; for a plain plugin its type (bridge, ptp, macvlan,
// ipvlan, ...). A directory with no config is "" and no error (a node
// whose CNI has not written its config yet); an unreadable or malformed
// first file is an error naming it.
func ConfiguredCNI(dir string) (string, error) {
	if dir == "" {
		dir = DefaultCNIDir
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading CNI config directory: %w", err)
	}
	// ReadDir sorts by name, as libcni's ConfFiles callers do.
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
		default:
			continue
		}
		if e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("reading CNI config: %w", err)
		}
		name, err := cniName(b)
		if err != nil {
			return "", fmt.Errorf("CNI config %s: %w", path, err)
		}
		return name, nil
	}
	return "", nil
}

// cniConf is the part of a network config (a single plugin's, or a list's)
// that names the plugins.
type cniConf struct {
	Name    string          `json:"name"`
	Type    string          `json:"type"`
	Bridge  string          `json:"bridge"`
	Plugins json.RawMessage `json:"plugins"`
}

// Plugins that only add to another's network (chained after it) or wrap
// it: never the network's name.
var chainedPlugins = []string{"portmap", "bandwidth", "tuning", "firewall", "sbr", "egress-cni", "loopback", "cilium-cni-chained"}

// cniName derives the network's name from one config file's bytes.
func cniName(b []byte) (string, error) {
	var top cniConf
	if err := json.Unmarshal(b, &top); err != nil {
		return "", jsonError(b, err)
	}
	plugins := []cniConf{top}
	if len(top.Plugins) > 0 && !bytes.Equal(bytes.TrimSpace(top.Plugins), []byte("null")) {
		plugins = nil
		if err := json.Unmarshal(top.Plugins, &plugins); err != nil {
			return "", fmt.Errorf("its plugins: %w", jsonError(b, err))
		}
		if len(plugins) == 0 {
			return "", errors.New("no plugins in the list")
		}
	}
	first := ""
	for _, p := range plugins {
		switch p.Type {
		case "calico":
			return "calico", nil
		case "cilium-cni":
			return "cilium", nil
		case "flannel":
			return "flannel", nil
		case "aws-cni": // amazon-vpc-cni-k8s: 10-aws.conflist
			return "aws-vpc-cni", nil
		case "weave-net":
			return "weave", nil
		case "antrea":
			return "antrea", nil
		case "ovn-k8s-cni-overlay":
			return "ovn-kubernetes", nil
		case "multus", "multus-shim":
			return "multus", nil
		case "bridge":
			// kube-router writes a bridge plugin config on its kube-bridge.
			if p.Bridge == "kube-bridge" {
				return "kube-router", nil
			}
		case "ptp":
			// kindnetd writes 10-kindnet.conflist, a ptp network named kindnet.
			if top.Name == "kindnet" {
				return "kindnet", nil
			}
		}
		if first == "" && p.Type != "" && !slices.Contains(chainedPlugins, p.Type) {
			first = p.Type
		}
	}
	if first == "" {
		return "", errors.New("no plugin type")
	}
	return first, nil
}

// jsonError says where in b a decoding error is: line, column and byte
// offset.
func jsonError(b []byte, err error) error {
	var off int64 = -1
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		off = syn.Offset
	case errors.As(err, &typ):
		off = typ.Offset
	}
	if off < 0 || off > int64(len(b)) {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	// The decoder's offset counts the bytes read, the offending one
	// included: point at that one.
	pos := max(off-1, 0)
	line := 1 + bytes.Count(b[:pos], []byte("\n"))
	col := int(pos) - bytes.LastIndexByte(b[:pos], '\n')
	return fmt.Errorf("malformed JSON at line %d, column %d (byte %d): %w", line, col, off, err)
}

// ClassifyLink names the CNI plugin an interface belongs to from its name
// and kind (IFLA_INFO_KIND) alone: only names one plugin makes, on links
// of the kind it makes them. Names shared by several (tunl0, cni0, the
// plugins' veth<8 hex>) need the configured CNI: ClassifyLinkFor.
// Unknown is "".
//
// Where the names come from:
//   - Calico: pod veths are "cali" and the first 11 hex digits of
//     sha1(namespace.pod) (libcalico-go VethNameForWorkload; the prefix
//     is FELIX_INTERFACEPREFIX, "cali" unless changed); vxlan.calico,
//     vxlan-v6.calico (VXLAN), wireguard.cali and wg-v6.cali (WireGuard),
//     bpfin.cali/bpfout.cali (eBPF dataplane).
//   - Cilium: pod veths "lxc" and hex digits of a hash of the endpoint
//     (pkg/datapath/connector), lxc_health for cilium-health;
//     cilium_host/cilium_net (a veth pair), cilium_vxlan, cilium_geneve,
//     cilium_wg0, cilium_ipip4/6.
//   - flannel: flannel.VNI (VXLAN, flannel.1 by default), flannel-v6.VNI,
//     flannel-wg and flannel-wg-v6 (WireGuard backend).
//   - AWS VPC CNI: pod veths "eni" and 11 hex digits of sha1(namespace.pod)
//     (networkutils.GeneratePodHostVethName, prefix AWS_VPC_K8S_CNI_VETHPREFIX).
//   - Weave Net: the weave bridge, vethwe-bridge/vethwe-datapath and pod
//     veths vethweplNNN, datapath (its Open vSwitch datapath), vxlan-6784.
//   - kube-router: kube-bridge, kube-dummy-if.
//   - Antrea: antrea-gw0, antrea-tun0 (Open vSwitch ports).
//   - OVN-Kubernetes: ovn-k8s-mp0 and its numbered siblings (management port).
func ClassifyLink(name, kind string) string {
	switch {
	case kind == "veth" && hexAfter(name, "cali", 1, 11):
		return "calico"
	case kind == "vxlan" && (name == "vxlan.calico" || name == "vxlan-v6.calico"):
		return "calico"
	case kind == "wireguard" && (name == "wireguard.cali" || name == "wg-v6.cali"):
		return "calico"
	case (name == "bpfin.cali" || name == "bpfout.cali") && kind == "veth":
		return "calico"

	case kind == "veth" && (hexAfter(name, "lxc", 1, 12) || name == "lxc_health"):
		return "cilium"
	case kind == "veth" && (name == "cilium_host" || name == "cilium_net"):
		return "cilium"
	case kind == "vxlan" && name == "cilium_vxlan", kind == "geneve" && name == "cilium_geneve",
		kind == "wireguard" && name == "cilium_wg0", kind == "ipip" && name == "cilium_ipip4",
		kind == "ip6tnl" && name == "cilium_ipip6":
		return "cilium"

	case kind == "vxlan" && (digitsAfter(name, "flannel.") || digitsAfter(name, "flannel-v6.")):
		return "flannel"
	case kind == "wireguard" && (name == "flannel-wg" || name == "flannel-wg-v6"):
		return "flannel"

	case kind == "veth" && hexAfter(name, "eni", 11, 11):
		return "aws-vpc-cni"

	case kind == "bridge" && name == "weave", kind == "openvswitch" && name == "datapath",
		kind == "veth" && strings.HasPrefix(name, "vethwe"), kind == "vxlan" && name == "vxlan-6784":
		return "weave"

	case kind == "bridge" && name == "kube-bridge", kind == "dummy" && name == "kube-dummy-if":
		return "kube-router"

	case kind == "openvswitch" && (name == "antrea-gw0" || name == "antrea-tun0"):
		return "antrea"

	case kind == "openvswitch" && (name == "ovn-k8s-mp0" || digitsAfter(name, "ovn-k8s-mp")):
		return "ovn-kubernetes"
	}
	return ""
}

// ClassifyLinkFor is ClassifyLink knowing the node's configured CNI (as
// ConfiguredCNI names it), which claims the names it shares with others:
//   - tunl0, the kernel's ipip fallback device, which Calico's IPIP mode
//     uses: calico when Calico is configured (any ipip module load makes it).
//   - cni0, the bridge plugin's default bridge, which flannel delegates to:
//     the configured CNI when it is flannel or the bridge plugin.
//   - veth plus 8 hex digits, the host side the containernetworking
//     plugins name with ip.RandomVethName (bridge, ptp, and those that
//     delegate to them: flannel, kube-router, kindnet): the configured CNI
//     when it is one of those.
func ClassifyLinkFor(configured, name, kind string) string {
	if cni := ClassifyLink(name, kind); cni != "" {
		return cni
	}
	switch {
	case name == "tunl0" && kind == "ipip":
		if configured == "calico" {
			return "calico"
		}
	case name == "cni0" && kind == "bridge":
		if configured == "flannel" || configured == "bridge" {
			return configured
		}
	case kind == "veth" && hexAfter(name, "veth", 8, 8):
		switch configured {
		case "bridge", "ptp", "flannel", "kube-router", "kindnet":
			return configured
		}
	}
	return ""
}

// hexAfter reports whether s is prefix followed by min to max lowercase
// hex digits.
func hexAfter(s, prefix string, min, max int) bool {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(rest) < min || len(rest) > max {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if !isLowerHex(rest[i]) {
			return false
		}
	}
	return true
}

// digitsAfter reports whether s is prefix followed by decimal digits.
func digitsAfter(s, prefix string) bool {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || rest == "" {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] < '0' || rest[i] > '9' {
			return false
		}
	}
	return true
}
