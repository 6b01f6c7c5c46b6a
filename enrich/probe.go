package enrich

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// SourceStatus is one pod source as probe found it.
type SourceStatus struct {
	Name     string // "cri", "kubernetes"
	Endpoint string
	Detail   string // what Describe said
	Err      error
}

// Report is what enrichment can use on this node.
type Report struct {
	CgroupMode string
	// Hierarchies are the cgroup hierarchies a process is in here, as
	// /proc/self/cgroup lists them; the kernel side reads the deepest.
	Hierarchies []string
	CNI         string
	CNIErr      error
	Sources     []SourceStatus
}

// Probe looks for the pod sources the options would use, and says how
// cgroups are mounted. It connects to each source and closes it again.
func Probe(ctx context.Context, opts Options) *Report {
	r := &Report{CgroupMode: CgroupMode()}
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		for _, l := range procCgroupLines(string(b)) {
			r.Hierarchies = append(r.Hierarchies, l.hierarchy)
		}
	}
	dir := opts.CNIConfDir
	if dir == "" {
		dir = "/etc/cni/net.d"
	}
	r.CNI, r.CNIErr = ConfiguredCNI(dir)

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cri := SourceStatus{Name: "cri", Endpoint: opts.CRISocket}
	switch opts.CRISocket {
	case "none":
		cri.Err = errors.New("turned off (--cri-socket none)")
	case "":
		ep, ok := DetectCRISocket()
		if !ok {
			cri.Err = errors.New("no socket at containerd's, CRI-O's, k3s's or cri-dockerd's default path (--cri-socket names one)")
			break
		}
		cri.Endpoint = ep
	}
	if cri.Err == nil {
		cri.Detail, cri.Err = describe(ctx, func() (Source, error) { return NewCRISource(cri.Endpoint) })
	}
	r.Sources = append(r.Sources, cri)

	kube := SourceStatus{Name: "kubernetes", Endpoint: opts.Kubeconfig}
	switch {
	case opts.Kubeconfig == "" && os.Getenv("KUBERNETES_SERVICE_HOST") == "":
		kube.Err = errors.New("off (--kubeconfig PATH or --kubeconfig in-cluster turns it on)")
	default:
		kc := opts.Kubeconfig
		if kc == "in-cluster" {
			kc = ""
		}
		if kube.Endpoint == "" {
			kube.Endpoint = "in-cluster"
		}
		kube.Detail, kube.Err = describe(ctx, func() (Source, error) {
			return NewKubeSource(KubeOptions{Kubeconfig: kc, NodeName: opts.NodeName, Logger: opts.Logger})
		})
	}
	r.Sources = append(r.Sources, kube)
	return r
}

func describe(ctx context.Context, open func() (Source, error)) (string, error) {
	s, err := open()
	if err != nil {
		return "", err
	}
	defer s.Close()
	d, err := s.Describe(ctx)
	if err != nil {
		return "", fmt.Errorf("connected, but: %w", err)
	}
	return d, nil
}
