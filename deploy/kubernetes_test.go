// Package deploy holds no code: its tests check the Kubernetes manifests
// in deploy/kubernetes. Every document is decoded strictly into the
// Kubernetes API types (an unknown or duplicate field, a value of the
// wrong type or an unknown kind fails with the file, the document and the
// field), then the invariants a node agent's grants rest on are checked:
// the container's capabilities and host mounts, its probes and resources,
// the Service and RBAC wiring, the policy (with routetrace's own parser)
// and the arguments (with routetrace's own flag parser).
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/routetrace/routetrace/metrics"
	"github.com/routetrace/routetrace/policy"
)

const (
	manifestDir     = "kubernetes"
	kustomization   = "kustomization.yaml"
	collectorConfig = "otel-collector/config.yaml"
)

// wantCaps are the capabilities the container adds, exactly: what
// `routetrace probe` checks for (tracer/env.go), SYS_ADMIN for setns(2)
// into pods' network namespaces (daemonset.yaml says why each).
var wantCaps = []string{"BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN"}

// hostMount is one host path the container mounts.
type hostMount struct {
	hostPath    string
	mountPath   string
	readOnly    bool
	typ         corev1.HostPathType
	propagation corev1.MountPropagationMode // "" is None
}

// wantHostMounts are the container's host paths, exactly: any other host
// path is a grant this test does not know about.
var wantHostMounts = []hostMount{
	{"/sys/fs/bpf", "/sys/fs/bpf", true, corev1.HostPathDirectory, ""},
	{"/sys/kernel/btf", "/sys/kernel/btf", true, corev1.HostPathDirectory, ""},
	{"/sys/kernel/tracing", "/sys/kernel/tracing", true, corev1.HostPathDirectory, ""},
	{"/sys/fs/cgroup", "/sys/fs/cgroup", true, corev1.HostPathDirectory, ""},
	{"/run/containerd/containerd.sock", "/run/containerd/containerd.sock", true, corev1.HostPathSocket, ""},
	{"/run/netns", "/run/netns", true, corev1.HostPathDirectoryOrCreate, corev1.MountPropagationHostToContainer},
	{"/etc/cni/net.d", "/etc/cni/net.d", true, corev1.HostPathDirectoryOrCreate, ""},
	// The journal: the only host path written.
	{"/var/lib/routetrace", "/var/lib/routetrace", false, corev1.HostPathDirectoryOrCreate, ""},
}

// wantVerbs are the ClusterRole's verbs on pods, exactly: what the pod
// informer of enrich/kubeapi.go calls.
var wantVerbs = []string{"list", "watch"}

// strictDecoder decodes YAML into the typed object of its kind, and fails
// on unknown and duplicate fields (case-sensitively, as the API server's
// strict field validation does).
var strictDecoder = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// object is one decoded document.
type object struct {
	file string // relative to deploy/
	doc  int    // 0-based index in its file
	obj  runtime.Object
}

func (o object) String() string {
	kind := o.obj.GetObjectKind().GroupVersionKind().Kind
	name := ""
	if m, ok := o.obj.(interface{ GetName() string }); ok {
		name = m.GetName()
	}
	return fmt.Sprintf("%s: document %d (%s %s)", o.file, o.doc, kind, name)
}

// manifests are every object in deploy/kubernetes, by kind.
type manifests struct {
	all                 []object
	namespaces          []*corev1.Namespace
	serviceAccounts     []*corev1.ServiceAccount
	configMaps          []*corev1.ConfigMap
	services            []*corev1.Service
	daemonSets          []*appsv1.DaemonSet
	clusterRoles        []*rbacv1.ClusterRole
	clusterRoleBindings []*rbacv1.ClusterRoleBinding
	// collectorOTLPPort is the Collector's OTLP/gRPC receiver port, from
	// deploy/otel-collector/config.yaml.
	collectorOTLPPort string
}

// decodeDocuments splits a file into its YAML documents and decodes each
// strictly. Documents holding only comments are skipped (but counted).
func decodeDocuments(file string, data []byte) ([]object, error) {
	r := kyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: reading document %d: %w", file, i, err)
		}
		if onlyComments(doc) {
			continue
		}
		obj, gvk, err := strictDecoder.Decode(doc, nil, nil)
		if err != nil {
			at := ""
			if gvk != nil && gvk.Kind != "" {
				at = " (" + gvk.Kind + ")"
			}
			return nil, fmt.Errorf("%s: document %d%s: %w", file, i, at, err)
		}
		out = append(out, object{file: file, doc: i, obj: obj})
	}
}

func onlyComments(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") && line != "---" {
			return false
		}
	}
	return true
}

// loadManifests decodes every *.yaml in deploy/kubernetes but the
// kustomization, which checkKustomization reads.
func loadManifests() (*manifests, error) {
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.yaml in %s", manifestDir)
	}
	m := &manifests{}
	for _, file := range files {
		if filepath.Base(file) == kustomization {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		objs, err := decodeDocuments(file, data)
		if err != nil {
			return nil, err
		}
		if len(objs) == 0 {
			return nil, fmt.Errorf("%s: no document", file)
		}
		for _, o := range objs {
			if err := m.add(o); err != nil {
				return nil, err
			}
		}
	}
	m.collectorOTLPPort, err = collectorGRPCPort(collectorConfig)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// add files an object by kind; a kind this test has no invariants for is
// an error, so that a new manifest comes with its checks.
func (m *manifests) add(o object) error {
	m.all = append(m.all, o)
	switch obj := o.obj.(type) {
	case *corev1.Namespace:
		m.namespaces = append(m.namespaces, obj)
	case *corev1.ServiceAccount:
		m.serviceAccounts = append(m.serviceAccounts, obj)
	case *corev1.ConfigMap:
		m.configMaps = append(m.configMaps, obj)
	case *corev1.Service:
		m.services = append(m.services, obj)
	case *appsv1.DaemonSet:
		m.daemonSets = append(m.daemonSets, obj)
	case *rbacv1.ClusterRole:
		m.clusterRoles = append(m.clusterRoles, obj)
	case *rbacv1.ClusterRoleBinding:
		m.clusterRoleBindings = append(m.clusterRoleBindings, obj)
	default:
		return fmt.Errorf("%s: kind %T has no invariants in this test: add them", o, o.obj)
	}
	return nil
}

// collectorGRPCPort reads the port of the example Collector's OTLP/gRPC
// receiver ("${env:MY_POD_IP}:4317").
func collectorGRPCPort(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	var cfg struct {
		Receivers struct {
			OTLP struct {
				Protocols struct {
					GRPC struct {
						Endpoint string `yaml:"endpoint"`
					} `yaml:"grpc"`
				} `yaml:"protocols"`
			} `yaml:"otlp"`
		} `yaml:"receivers"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	ep := cfg.Receivers.OTLP.Protocols.GRPC.Endpoint
	i := strings.LastIndex(ep, ":")
	if i < 0 {
		return "", fmt.Errorf("%s: receivers.otlp.protocols.grpc.endpoint %q has no port", file, ep)
	}
	return ep[i+1:], nil
}

// check runs every invariant; each error names the object it is about.
func (m *manifests) check() []error {
	var errs []error
	errs = append(errs, m.checkMetadata()...)
	ds, err := m.daemonSet()
	if err != nil {
		return append(errs, err)
	}
	errs = append(errs, m.checkPodSpec(ds)...)
	errs = append(errs, m.checkContainer(ds)...)
	errs = append(errs, m.checkArgs(ds)...)
	errs = append(errs, m.checkPolicy(ds)...)
	errs = append(errs, m.checkService(ds)...)
	errs = append(errs, m.checkRBAC(ds)...)
	return errs
}

func (m *manifests) daemonSet() (*appsv1.DaemonSet, error) {
	if len(m.daemonSets) != 1 {
		return nil, fmt.Errorf("want exactly one DaemonSet, have %d", len(m.daemonSets))
	}
	ds := m.daemonSets[0]
	if n := len(ds.Spec.Template.Spec.Containers); n != 1 {
		return nil, fmt.Errorf("%s: want exactly one container, have %d", m.where(ds), n)
	}
	return ds, nil
}

// where names an object by its file, document, kind and name.
func (m *manifests) where(obj runtime.Object) string {
	for _, o := range m.all {
		if o.obj == obj {
			return o.String()
		}
	}
	return fmt.Sprintf("%T (not in the manifests)", obj)
}

// checkMetadata: valid names and labels, every namespaced object in a
// namespace the manifests create, cluster-scoped ones in none.
func (m *manifests) checkMetadata() []error {
	var errs []error
	nss := map[string]bool{}
	for _, ns := range m.namespaces {
		nss[ns.Name] = true
		// hostPID, hostNetwork, host paths and added capabilities are the
		// "privileged" Pod Security level: any other refuses the pods.
		if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
			errs = append(errs, fmt.Errorf("%s: label pod-security.kubernetes.io/enforce is %q, want privileged (the DaemonSet's pods are refused otherwise)", m.where(ns), got))
		}
	}
	for _, o := range m.all {
		meta, ok := o.obj.(interface {
			GetName() string
			GetNamespace() string
			GetLabels() map[string]string
		})
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no object metadata", o))
			continue
		}
		for _, msg := range validation.IsDNS1123Subdomain(meta.GetName()) {
			errs = append(errs, fmt.Errorf("%s: metadata.name: %s", o, msg))
		}
		for k, v := range meta.GetLabels() {
			for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
				errs = append(errs, fmt.Errorf("%s: label %s=%s: %s", o, k, v, msg))
			}
		}
		switch o.obj.(type) {
		case *corev1.Namespace, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding:
			if ns := meta.GetNamespace(); ns != "" {
				errs = append(errs, fmt.Errorf("%s: cluster-scoped, but has namespace %q", o, ns))
			}
		default:
			if ns := meta.GetNamespace(); !nss[ns] {
				errs = append(errs, fmt.Errorf("%s: namespace %q is not one the manifests create", o, ns))
			}
		}
	}
	return errs
}

func (m *manifests) checkPodSpec(ds *appsv1.DaemonSet) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{m.where(ds)}, args...)...))
	}
	spec := ds.Spec.Template.Spec
	if sel := ds.Spec.Selector; sel == nil || len(sel.MatchLabels) == 0 {
		bad("spec.selector.matchLabels is empty")
	} else {
		for k, v := range sel.MatchLabels {
			if ds.Spec.Template.Labels[k] != v {
				bad("selector %s=%s does not match the pod template's labels", k, v)
			}
		}
	}
	if !spec.HostNetwork {
		bad("hostNetwork is false: routetrace's own namespace must be the node's")
	}
	if !spec.HostPID {
		bad("hostPID is false: the kernel's pids are the node's, and /proc must show them")
	}
	if spec.HostIPC {
		bad("hostIPC is true: routetrace uses no IPC")
	}
	if spec.ShareProcessNamespace != nil && *spec.ShareProcessNamespace {
		bad("shareProcessNamespace is true")
	}
	if len(spec.InitContainers) > 0 || len(spec.EphemeralContainers) > 0 {
		bad("has init or ephemeral containers: their grants are not checked")
	}
	if spec.PriorityClassName != "system-node-critical" {
		bad("priorityClassName is %q, want system-node-critical", spec.PriorityClassName)
	}
	tolerateAll := slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool {
		return t.Key == "" && t.Operator == corev1.TolerationOpExists && t.Effect == ""
	})
	if !tolerateAll {
		bad("no toleration {operator: Exists}: it would not run on every node")
	}
	if spec.ServiceAccountName == "" {
		bad("no serviceAccountName")
	}
	if spec.SecurityContext == nil || spec.SecurityContext.SeccompProfile == nil ||
		spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("the pod's seccompProfile is not RuntimeDefault")
	}
	if s := ds.Spec.UpdateStrategy; s.Type != appsv1.RollingUpdateDaemonSetStrategyType || s.RollingUpdate == nil ||
		s.RollingUpdate.MaxSurge == nil || s.RollingUpdate.MaxSurge.String() != "0" {
		bad("updateStrategy must be RollingUpdate with maxSurge 0: the journal has one writer per node")
	}

	// Volumes: each mounted, each mount of a declared volume, host paths
	// exactly the expected ones.
	c := spec.Containers[0]
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		if _, dup := volumes[v.Name]; dup {
			bad("volume %s declared twice", v.Name)
		}
		volumes[v.Name] = v
	}
	mounted := map[string]bool{}
	paths := map[string]bool{}
	var got []hostMount
	for _, vm := range c.VolumeMounts {
		v, ok := volumes[vm.Name]
		if !ok {
			bad("volumeMount %s (at %s) has no volume", vm.Name, vm.MountPath)
			continue
		}
		mounted[vm.Name] = true
		if paths[vm.MountPath] {
			bad("two volumes mounted at %s", vm.MountPath)
		}
		paths[vm.MountPath] = true
		if vm.SubPath != "" || vm.SubPathExpr != "" {
			bad("volumeMount %s uses a subPath (a ConfigMap's updates would not reach it)", vm.Name)
		}
		if vm.MountPropagation != nil && *vm.MountPropagation == corev1.MountPropagationBidirectional {
			bad("volumeMount %s: Bidirectional propagation needs a privileged container", vm.Name)
		}
		if v.HostPath == nil {
			if !vm.ReadOnly {
				bad("volumeMount %s of a %s volume is writable", vm.Name, volumeSource(v))
			}
			continue
		}
		hm := hostMount{hostPath: v.HostPath.Path, mountPath: vm.MountPath, readOnly: vm.ReadOnly}
		if v.HostPath.Type != nil {
			hm.typ = *v.HostPath.Type
		}
		if vm.MountPropagation != nil && *vm.MountPropagation != corev1.MountPropagationNone {
			hm.propagation = *vm.MountPropagation
		}
		got = append(got, hm)
	}
	for _, v := range spec.Volumes {
		if !mounted[v.Name] {
			bad("volume %s (%s) is mounted by no container", v.Name, volumeSource(v))
		}
	}
	for _, w := range wantHostMounts {
		i := slices.IndexFunc(got, func(h hostMount) bool { return h.hostPath == w.hostPath })
		if i < 0 {
			bad("host path %s is not mounted", w.hostPath)
			continue
		}
		if got[i] != w {
			bad("host path %s: mounted as %+v, want %+v", w.hostPath, got[i], w)
		}
	}
	for _, h := range got {
		if !slices.ContainsFunc(wantHostMounts, func(w hostMount) bool { return w.hostPath == h.hostPath }) {
			bad("host path %s is mounted (at %s) but not expected: a grant this test does not know", h.hostPath, h.mountPath)
		}
	}
	return errs
}

func volumeSource(v corev1.Volume) string {
	switch {
	case v.HostPath != nil:
		return "hostPath " + v.HostPath.Path
	case v.ConfigMap != nil:
		return "configMap " + v.ConfigMap.Name
	case v.Secret != nil:
		return "secret " + v.Secret.SecretName
	case v.EmptyDir != nil:
		return "emptyDir"
	}
	return "other"
}

func (m *manifests) checkContainer(ds *appsv1.DaemonSet) []error {
	var errs []error
	c := ds.Spec.Template.Spec.Containers[0]
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s, container %s: "+format, append([]any{m.where(ds), c.Name}, args...)...))
	}

	// The image: a tag, never latest (the placeholder VERSION included).
	ref := c.Image
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	tag := ""
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		tag = ref[i+1:]
	}
	if tag == "" || tag == "latest" {
		bad("image %q: want an explicit version tag", c.Image)
	}

	sc := c.SecurityContext
	if sc == nil {
		bad("no securityContext")
		return errs
	}
	if sc.Privileged != nil && *sc.Privileged {
		bad("privileged: only the capabilities it needs, not all of them")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		bad("readOnlyRootFilesystem is not true")
	}
	if sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
		bad("seccompProfile Unconfined")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		bad("runAsUser is not 0: another user gets only the binary's file capabilities, not SYS_ADMIN")
	}
	if sc.Capabilities == nil {
		bad("no capabilities: want drop [ALL] and add %v", wantCaps)
		return errs
	}
	if drop := sc.Capabilities.Drop; len(drop) != 1 || drop[0] != "ALL" {
		bad("capabilities.drop is %v, want [ALL]", drop)
	}
	var add []string
	for _, c := range sc.Capabilities.Add {
		add = append(add, string(c))
	}
	if !sameSet(add, wantCaps) {
		bad("capabilities.add is %v, want exactly %v", add, wantCaps)
	}
	sysAdmin := slices.ContainsFunc(add, func(c string) bool { return strings.TrimPrefix(strings.ToUpper(c), "CAP_") == "SYS_ADMIN" })
	switch ape := sc.AllowPrivilegeEscalation; {
	case sysAdmin && ape != nil && !*ape:
		bad("allowPrivilegeEscalation false beside SYS_ADMIN: the API server refuses it (CAP_SYS_ADMIN can escalate anyway)")
	case !sysAdmin && (ape == nil || *ape):
		bad("allowPrivilegeEscalation is not false, and nothing needs it")
	}

	// Ports and probes: every probe GETs /metrics on the metrics port.
	for _, p := range c.Ports {
		for _, msg := range validation.IsValidPortName(p.Name) {
			bad("port name %q: %s", p.Name, msg)
		}
	}
	metricsPort, err := resolvePort(c, intstr.FromString("metrics"))
	if err != nil {
		bad("%v", err)
	}
	probes := []struct {
		name     string
		p        *corev1.Probe
		required bool
	}{{"livenessProbe", c.LivenessProbe, true}, {"readinessProbe", c.ReadinessProbe, true}, {"startupProbe", c.StartupProbe, false}}
	for _, pr := range probes {
		switch {
		case pr.p == nil && pr.required:
			bad("no %s", pr.name)
		case pr.p == nil:
		case pr.p.HTTPGet == nil:
			bad("%s is not an httpGet: the metrics server is the one endpoint", pr.name)
		default:
			if pr.p.HTTPGet.Path != "/metrics" {
				bad("%s GETs %q: the metrics server serves /metrics", pr.name, pr.p.HTTPGet.Path)
			}
			if p, err := resolvePort(c, pr.p.HTTPGet.Port); err != nil {
				bad("%s: %v", pr.name, err)
			} else if p != metricsPort {
				bad("%s GETs port %d, the metrics are on %d", pr.name, p, metricsPort)
			}
		}
	}

	// Resources: requests and limits for cpu and memory, requests within
	// the limits.
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[res]
		lim, okLim := c.Resources.Limits[res]
		switch {
		case !okReq || req.IsZero():
			bad("no %s request", res)
		case !okLim || lim.IsZero():
			bad("no %s limit", res)
		case req.Cmp(lim) > 0:
			bad("%s request %s is above its limit %s", res, req.String(), lim.String())
		}
	}
	return errs
}

// resolvePort finds the container port a probe or Service names, by name
// or by number.
func resolvePort(c corev1.Container, p intstr.IntOrString) (int32, error) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("port %s is not a declared container port", p.String())
}

// sampleEnv is what the kubelet would put in the container's environment
// on a node with address ip: fieldRef values from the downward API, and
// literal values with their $(VAR) references expanded.
func sampleEnv(c corev1.Container, ip string) (env map[string]string, environ []string, err error) {
	env = map[string]string{}
	for _, e := range c.Env {
		var v string
		switch {
		case e.ValueFrom == nil:
			if v, err = expand(e.Value, env); err != nil {
				return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "spec.nodeName":
				v = "node-1"
			case "status.podIP", "status.hostIP": // the same on the host network
				v = ip
			default:
				return nil, nil, fmt.Errorf("env %s: no sample for fieldRef %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		default:
			return nil, nil, fmt.Errorf("env %s: a source this test has no sample for", e.Name)
		}
		env[e.Name] = v
		environ = append(environ, e.Name+"="+v)
	}
	return env, environ, nil
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// expand replaces $(VAR) as the kubelet does, but fails where the kubelet
// would silently leave an unknown reference as it is.
func expand(s string, env map[string]string) (string, error) {
	var err error
	out := varRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := varRef.FindStringSubmatch(ref)[1]
		v, ok := env[name]
		if !ok && err == nil {
			err = fmt.Errorf("%s refers to %s, which no env entry before it defines", s, ref)
		}
		return v
	})
	return out, err
}

// invocation is the container's `routetrace trace` as the kubelet would
// start it on a node with address ip.
type invocation struct {
	args    []string          // the flags after trace, expanded
	flags   map[string]string // their values by name
	env     map[string]string
	environ []string // env as NAME=value, in order
}

var flagArg = regexp.MustCompile(`^--([a-z0-9][a-z0-9-]*)=(.*)$`)

// invocationOn reads the container's args and env: `trace` and flags as
// --name=value only, every $(VAR) defined.
func invocationOn(c corev1.Container, ip string) (*invocation, error) {
	if len(c.Command) > 0 {
		return nil, fmt.Errorf("command is set (%v): the image's entrypoint is routetrace", c.Command)
	}
	if len(c.Args) == 0 || c.Args[0] != "trace" {
		return nil, fmt.Errorf("args %v: want `trace` and its flags", c.Args)
	}
	inv := &invocation{flags: map[string]string{}}
	var err error
	if inv.env, inv.environ, err = sampleEnv(c, ip); err != nil {
		return nil, err
	}
	for _, a := range c.Args[1:] {
		// --name=value only: with a separate value, a bool flag would take
		// the next word as an argument and stop the flag parsing.
		m := flagArg.FindStringSubmatch(a)
		if m == nil {
			return nil, fmt.Errorf("argument %q: want --name=value", a)
		}
		if _, dup := inv.flags[m[1]]; dup {
			return nil, fmt.Errorf("--%s given twice", m[1])
		}
		v, err := expand(m[2], inv.env)
		if err != nil {
			return nil, err
		}
		inv.flags[m[1]] = v
		inv.args = append(inv.args, "--"+m[1]+"="+v)
	}
	return inv, nil
}

// checkArgs checks what the flags and environment point at: the mounts,
// the metrics port the probes and the Service use, the node's Collector.
func (m *manifests) checkArgs(ds *appsv1.DaemonSet) []error {
	var errs []error
	c := ds.Spec.Template.Spec.Containers[0]
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s, container %s: "+format, append([]any{m.where(ds), c.Name}, args...)...))
	}
	mountOf := func(host string) string {
		i := slices.IndexFunc(wantHostMounts, func(h hostMount) bool { return h.hostPath == host })
		return wantHostMounts[i].mountPath
	}
	const nodeIP = "192.0.2.10"
	inv, err := invocationOn(c, nodeIP)
	if err != nil {
		bad("%v", err)
		return errs
	}
	if inv.env["NODE_NAME"] != "node-1" {
		bad("no NODE_NAME from spec.nodeName: --node-name reads it, the pod source's field selector is made of it")
	}
	if got, want := inv.flags["state-dir"], mountOf("/var/lib/routetrace"); got != want {
		bad("--state-dir=%s, want the journal's mount %s", got, want)
	}
	if got, want := strings.TrimPrefix(inv.flags["cri-socket"], "unix://"), mountOf("/run/containerd/containerd.sock"); got != want {
		bad("--cri-socket=%s, want the socket's mount %s", inv.flags["cri-socket"], want)
	}
	if inv.flags["kubeconfig"] != "in-cluster" {
		bad("--kubeconfig=%s, want in-cluster (rbac.yaml is for it)", inv.flags["kubeconfig"])
	}

	// Metrics on the node's address (IPv4 or IPv6), on the port the probes
	// and the Service name.
	metricsPort, err := resolvePort(c, intstr.FromString("metrics"))
	if err != nil {
		bad("%v", err)
	}
	for _, ip := range []string{nodeIP, "2001:db8::10"} {
		inv, err := invocationOn(c, ip)
		if err != nil {
			bad("%v", err)
			continue
		}
		addr, err := metrics.ListenAddr(inv.flags["metrics-addr"])
		if err != nil {
			bad("node address %s: %v", ip, err)
			continue
		}
		host, port, _ := net.SplitHostPort(addr)
		if host != ip {
			bad("--metrics-addr=%s listens on %s: want the node's address %s (the probes and Prometheus reach it there)", inv.flags["metrics-addr"], host, ip)
		}
		if port != strconv.Itoa(int(metricsPort)) {
			bad("--metrics-addr=%s: port %s is not the container port named metrics (%d)", inv.flags["metrics-addr"], port, metricsPort)
		}
	}

	// The Collector: the node's, on the example config's OTLP/gRPC port,
	// without TLS (http).
	endpoint := inv.env["OTEL_EXPORTER_OTLP_ENDPOINT"]
	u, err := url.Parse(endpoint)
	switch {
	case endpoint == "":
		bad("no OTEL_EXPORTER_OTLP_ENDPOINT: spans go to the node's Collector")
	case err != nil:
		bad("OTEL_EXPORTER_OTLP_ENDPOINT %q: %v", endpoint, err)
	case u.Scheme != "http" || u.Hostname() != nodeIP || u.Port() != m.collectorOTLPPort:
		bad("OTEL_EXPORTER_OTLP_ENDPOINT is %s on a node at %s: want http://%s:%s, the node's Collector (%s)",
			endpoint, nodeIP, nodeIP, m.collectorOTLPPort, collectorConfig)
	}
	return errs
}

// checkPolicy parses the policy the DaemonSet reads with routetrace's own
// parser.
func (m *manifests) checkPolicy(ds *appsv1.DaemonSet) []error {
	c := ds.Spec.Template.Spec.Containers[0]
	inv, err := invocationOn(c, "192.0.2.10")
	if err != nil {
		return nil // checkArgs says why
	}
	path := inv.flags["policy"]
	if path == "" {
		return []error{fmt.Errorf("%s: no --policy", m.where(ds))}
	}
	var vol *corev1.Volume
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == filepath.Dir(path) {
			for i, v := range ds.Spec.Template.Spec.Volumes {
				if v.Name == vm.Name && v.ConfigMap != nil {
					vol = &ds.Spec.Template.Spec.Volumes[i]
				}
			}
		}
	}
	if vol == nil {
		return []error{fmt.Errorf("%s: --policy=%s is not in a mounted ConfigMap volume", m.where(ds), path)}
	}
	key := filepath.Base(path)
	i := slices.IndexFunc(m.configMaps, func(cm *corev1.ConfigMap) bool {
		return cm.Name == vol.ConfigMap.Name && cm.Namespace == ds.Namespace
	})
	if i < 0 {
		return []error{fmt.Errorf("%s: ConfigMap %s/%s (volume %s) is not in the manifests", m.where(ds), ds.Namespace, vol.ConfigMap.Name, vol.Name)}
	}
	cm := m.configMaps[i]
	text, ok := cm.Data[key]
	if !ok || len(vol.ConfigMap.Items) > 0 {
		return []error{fmt.Errorf("%s: no key %s for --policy=%s (and no items remapping)", m.where(cm), key, path)}
	}
	// The parser's messages add the line within the policy text.
	p, err := policy.Parse(fmt.Sprintf("%s data[%s]", m.where(cm), key), []byte(text))
	if err != nil {
		return []error{fmt.Errorf("the policy does not load: %w", err)}
	}
	if p.Mode != policy.ModeAudit {
		return []error{fmt.Errorf("%s: policy mode %s, want audit: a switch to enforce must not refuse anything before a review", m.where(cm), p.Mode)}
	}
	return nil
}

func (m *manifests) checkService(ds *appsv1.DaemonSet) []error {
	var errs []error
	if len(m.services) == 0 {
		return []error{errors.New("no Service for the metrics")}
	}
	c := ds.Spec.Template.Spec.Containers[0]
	for _, svc := range m.services {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: "+format, append([]any{m.where(svc)}, args...)...))
		}
		if svc.Namespace != ds.Namespace {
			bad("in namespace %s, the DaemonSet in %s", svc.Namespace, ds.Namespace)
		}
		if len(svc.Spec.Selector) == 0 {
			bad("no selector")
		}
		for k, v := range svc.Spec.Selector {
			if ds.Spec.Template.Labels[k] != v {
				bad("selector %s=%s matches no label of the DaemonSet's pods", k, v)
			}
		}
		if len(svc.Spec.Ports) == 0 {
			bad("no ports")
		}
		for _, p := range svc.Spec.Ports {
			for _, msg := range validation.IsValidPortName(p.Name) {
				bad("port name %q: %s", p.Name, msg)
			}
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port) // the default
			}
			cp, err := resolvePort(c, target)
			if err != nil {
				bad("port %s: targetPort: %v", p.Name, err)
				continue
			}
			if a, ok := svc.Annotations["prometheus.io/port"]; ok && a != strconv.Itoa(int(cp)) {
				bad("annotation prometheus.io/port %s, but the metrics are on %d", a, cp)
			}
		}
	}
	return errs
}

func (m *manifests) checkRBAC(ds *appsv1.DaemonSet) []error {
	var errs []error
	sa := ds.Spec.Template.Spec.ServiceAccountName
	if !slices.ContainsFunc(m.serviceAccounts, func(s *corev1.ServiceAccount) bool { return s.Name == sa && s.Namespace == ds.Namespace }) {
		errs = append(errs, fmt.Errorf("%s: ServiceAccount %s/%s is not in the manifests", m.where(ds), ds.Namespace, sa))
	}
	if len(m.clusterRoles) != 1 {
		return append(errs, fmt.Errorf("want exactly one ClusterRole, have %d", len(m.clusterRoles)))
	}
	role := m.clusterRoles[0]
	if role.AggregationRule != nil {
		errs = append(errs, fmt.Errorf("%s: aggregates other roles", m.where(role)))
	}
	if len(role.Rules) != 1 {
		errs = append(errs, fmt.Errorf("%s: %d rules, want exactly one: list and watch pods", m.where(role), len(role.Rules)))
	}
	for i, r := range role.Rules {
		if !slices.Equal(r.APIGroups, []string{""}) || !slices.Equal(r.Resources, []string{"pods"}) ||
			!sameSet(r.Verbs, wantVerbs) || len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			errs = append(errs, fmt.Errorf("%s: rules[%d] grants %v on %v in groups %v (names %v, URLs %v): want exactly %v on pods in the core group",
				m.where(role), i, r.Verbs, r.Resources, r.APIGroups, r.ResourceNames, r.NonResourceURLs, wantVerbs))
		}
	}
	if len(m.clusterRoleBindings) != 1 {
		return append(errs, fmt.Errorf("want exactly one ClusterRoleBinding, have %d", len(m.clusterRoleBindings)))
	}
	b := m.clusterRoleBindings[0]
	if b.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name}) {
		errs = append(errs, fmt.Errorf("%s: roleRef %+v, want the ClusterRole %s", m.where(b), b.RoleRef, role.Name))
	}
	want := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ds.Namespace}
	if len(b.Subjects) != 1 || b.Subjects[0] != want {
		errs = append(errs, fmt.Errorf("%s: subjects %+v, want exactly the DaemonSet's ServiceAccount %+v", m.where(b), b.Subjects, want))
	}
	return errs
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b) && len(slices.Compact(a)) == len(b)
}

// checkKustomization reads kustomization.yaml strictly (the fields it
// uses) and checks it lists every other manifest, each once.
func checkKustomization() error {
	file := filepath.Join(manifestDir, kustomization)
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var k struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Resources  []string `yaml:"resources"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&k); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return fmt.Errorf("%s: apiVersion %q kind %q, want kustomize.config.k8s.io/v1beta1 Kustomization", file, k.APIVersion, k.Kind)
	}
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil {
		return err
	}
	var want []string
	for _, f := range files {
		if filepath.Base(f) != kustomization {
			want = append(want, filepath.Base(f))
		}
	}
	if !sameSet(k.Resources, want) {
		return fmt.Errorf("%s: resources %v, want each of %v once", file, k.Resources, want)
	}
	return nil
}

func TestManifests(t *testing.T) {
	m, err := loadManifests()
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range m.check() {
		t.Error(err)
	}
	if err := checkKustomization(); err != nil {
		t.Error(err)
	}
	t.Logf("%d objects checked", len(m.all))
}

// TestStrictDecoding proves the decoding refuses what the API server's
// strict field validation would, naming the file and the field.
func TestStrictDecoding(t *testing.T) {
	const file = "kubernetes/daemonset.yaml"
	orig, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// Each case replaces old with new in the manifest (appends new when old
	// is empty), and wants every one of want in the error.
	cases := []struct {
		name, old, new string
		want           []string
	}{
		{"misspelled field", "hostNetwork: true", "hostNetwrok: true",
			[]string{file, "document 0", `unknown field "spec.template.spec.hostNetwrok"`}},
		{"field in the wrong case", "readOnlyRootFilesystem:", "readonlyRootFilesystem:",
			[]string{file, `unknown field "spec.template.spec.containers[0].securityContext.readonlyRootFilesystem"`}},
		{"duplicate field", "hostPID: true", "hostPID: true\n      hostPID: false",
			[]string{file, "hostPID", "already set"}},
		{"wrong type", "containerPort: 9464", "containerPort: metrics",
			[]string{file, "containerPort"}},
		{"unknown kind", "kind: DaemonSet", "kind: DaemonSett",
			[]string{file, `no kind "DaemonSett" is registered`}},
		{"second document", "", "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndatta: {}\n",
			[]string{file, "document 1", `unknown field "datta"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			edited := string(orig) + tc.new
			if tc.old != "" {
				if !strings.Contains(string(orig), tc.old) {
					t.Fatalf("the manifest no longer has %q to replace", tc.old)
				}
				edited = strings.Replace(string(orig), tc.old, tc.new, 1)
			}
			_, err := decodeDocuments(file, []byte(edited))
			if err == nil {
				t.Fatal("decoded without an error")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
	if _, err := decodeDocuments(file, orig); err != nil {
		t.Errorf("the manifest itself: %v", err)
	}
}

// TestInvariantsCatch breaks each invariant in a freshly decoded copy and
// checks that check() reports it: a check that cannot fail checks nothing.
func TestInvariantsCatch(t *testing.T) {
	ctr := func(m *manifests) *corev1.Container { return &m.daemonSets[0].Spec.Template.Spec.Containers[0] }
	pod := func(m *manifests) *corev1.PodSpec { return &m.daemonSets[0].Spec.Template.Spec }
	mount := func(m *manifests, path string) *corev1.VolumeMount {
		c := ctr(m)
		i := slices.IndexFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == path })
		if i < 0 {
			panic("no mount at " + path)
		}
		return &c.VolumeMounts[i]
	}
	setArg := func(m *manifests, name, value string) {
		c := ctr(m)
		for i, a := range c.Args {
			if strings.HasPrefix(a, "--"+name+"=") {
				c.Args[i] = "--" + name + "=" + value
				return
			}
		}
		panic("no --" + name)
	}
	ptr := func(b bool) *bool { return &b }
	cases := []struct {
		name   string
		mutate func(m *manifests)
		want   string
	}{
		{"privileged", func(m *manifests) { ctr(m).SecurityContext.Privileged = ptr(true) }, "privileged"},
		{"extra capability", func(m *manifests) {
			c := ctr(m)
			c.SecurityContext.Capabilities.Add = append(c.SecurityContext.Capabilities.Add, "SYS_PTRACE")
		}, "capabilities.add"},
		{"missing capability", func(m *manifests) {
			ctr(m).SecurityContext.Capabilities.Add = []corev1.Capability{"BPF", "PERFMON", "NET_ADMIN"}
		}, "capabilities.add"},
		{"drop not ALL", func(m *manifests) { ctr(m).SecurityContext.Capabilities.Drop = []corev1.Capability{"NET_RAW"} }, "capabilities.drop"},
		{"allowPrivilegeEscalation false beside SYS_ADMIN", func(m *manifests) { ctr(m).SecurityContext.AllowPrivilegeEscalation = ptr(false) }, "allowPrivilegeEscalation"},
		{"writable root", func(m *manifests) { ctr(m).SecurityContext.ReadOnlyRootFilesystem = ptr(false) }, "readOnlyRootFilesystem"},
		{"no hostPID", func(m *manifests) { pod(m).HostPID = false }, "hostPID"},
		{"no hostNetwork", func(m *manifests) { pod(m).HostNetwork = false }, "hostNetwork"},
		{"mount without volume", func(m *manifests) { mount(m, "/sys/kernel/btf").Name = "btff" }, "has no volume"},
		{"writable BTF", func(m *manifests) { mount(m, "/sys/kernel/btf").ReadOnly = false }, "host path /sys/kernel/btf"},
		{"writable cgroup", func(m *manifests) { mount(m, "/sys/fs/cgroup").ReadOnly = false }, "host path /sys/fs/cgroup"},
		{"writable CRI socket", func(m *manifests) { mount(m, "/run/containerd/containerd.sock").ReadOnly = false }, "host path /run/containerd/containerd.sock"},
		{"writable bpffs", func(m *manifests) { mount(m, "/sys/fs/bpf").ReadOnly = false }, "host path /sys/fs/bpf"},
		{"read-only state", func(m *manifests) { mount(m, "/var/lib/routetrace").ReadOnly = true }, "host path /var/lib/routetrace"},
		{"netns without propagation", func(m *manifests) { mount(m, "/run/netns").MountPropagation = nil }, "host path /run/netns"},
		{"unexpected host path", func(m *manifests) {
			p := pod(m)
			p.Volumes = append(p.Volumes, corev1.Volume{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
			c := ctr(m)
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "root", MountPath: "/host", ReadOnly: true})
		}, "host path / is mounted"},
		{"no liveness probe", func(m *manifests) { ctr(m).LivenessProbe = nil }, "no livenessProbe"},
		{"readiness probe on an undeclared port", func(m *manifests) { ctr(m).ReadinessProbe.HTTPGet.Port = intstr.FromString("metric") }, "readinessProbe: port metric"},
		{"no memory limit", func(m *manifests) { delete(ctr(m).Resources.Limits, corev1.ResourceMemory) }, "no memory limit"},
		{"no cpu request", func(m *manifests) { delete(ctr(m).Resources.Requests, corev1.ResourceCPU) }, "no cpu request"},
		{"Service selects other pods", func(m *manifests) { m.services[0].Spec.Selector["app.kubernetes.io/name"] = "other" }, "matches no label"},
		{"Service targets an undeclared port", func(m *manifests) { m.services[0].Spec.Ports[0].TargetPort = intstr.FromInt32(9100) }, "targetPort"},
		{"ClusterRole can get secrets", func(m *manifests) {
			m.clusterRoles[0].Rules[0].Resources = append(m.clusterRoles[0].Rules[0].Resources, "secrets")
		}, "rules[0]"},
		{"ClusterRole can delete pods", func(m *manifests) {
			m.clusterRoles[0].Rules[0].Verbs = append(m.clusterRoles[0].Rules[0].Verbs, "delete")
		}, "rules[0]"},
		{"ClusterRole has a second rule", func(m *manifests) {
			m.clusterRoles[0].Rules = append(m.clusterRoles[0].Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}})
		}, "2 rules"},
		{"binding to another account", func(m *manifests) { m.clusterRoleBindings[0].Subjects[0].Name = "default" }, "subjects"},
		{"binding in another namespace", func(m *manifests) { m.clusterRoleBindings[0].Subjects[0].Namespace = "kube-system" }, "subjects"},
		{"policy that does not parse", func(m *manifests) { m.configMaps[0].Data["policy.yaml"] = "protect:\n  - prefix: 10.244.0.0/33\n" }, "is not a CIDR"},
		{"policy in block mode", func(m *manifests) {
			m.configMaps[0].Data["policy.yaml"] = strings.Replace(m.configMaps[0].Data["policy.yaml"], "mode: audit", "mode: block", 1)
		}, "want audit"},
		{"metrics on loopback", func(m *manifests) { setArg(m, "metrics-addr", "9464") }, "listens on 127.0.0.1"},
		{"metrics on another port", func(m *manifests) { setArg(m, "metrics-addr", "[$(POD_IP)]:9465") }, "is not the container port"},
		{"unresolved variable", func(m *manifests) { setArg(m, "metrics-addr", "[$(HOST_IP)]:9464") }, "refers to $(HOST_IP)"},
		{"state dir off the mount", func(m *manifests) { setArg(m, "state-dir", "/var/lib/rt") }, "--state-dir"},
		{"flag with a separate value", func(m *manifests) { ctr(m).Args = append(ctr(m).Args, "--enrich", "false") }, "want --name=value"},
		{"Collector on another port", func(m *manifests) {
			c := ctr(m)
			for i := range c.Env {
				if c.Env[i].Name == "OTEL_EXPORTER_OTLP_ENDPOINT" {
					c.Env[i].Value = "http://$(NODE_IP):4318"
				}
			}
		}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"image latest", func(m *manifests) { ctr(m).Image = "ghcr.io/routetrace/routetrace:latest" }, "explicit version tag"},
		{"no toleration", func(m *manifests) { pod(m).Tolerations = nil }, "toleration"},
		{"namespace not privileged", func(m *manifests) { m.namespaces[0].Labels["pod-security.kubernetes.io/enforce"] = "baseline" }, "pod-security"},
		{"object in another namespace", func(m *manifests) { m.configMaps[0].Namespace = "default" }, `namespace "default"`},
		{"surge pod", func(m *manifests) {
			v := intstr.FromInt32(1)
			m.daemonSets[0].Spec.UpdateStrategy.RollingUpdate.MaxSurge = &v
		}, "maxSurge"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := loadManifests()
			if err != nil {
				t.Fatal(err)
			}
			tc.mutate(m)
			errs := m.check()
			if len(errs) == 0 {
				t.Fatalf("check() found nothing wrong; want an error saying %q", tc.want)
			}
			if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.want) }) {
				t.Errorf("no error says %q; got:\n%v", tc.want, errors.Join(errs...))
			}
		})
	}
}

// routetraceBinary is ROUTETRACE_BINARY, else one built from
// cmd/routetrace (package main: its flag parser is reachable only by
// running it).
func routetraceBinary(t *testing.T) string {
	if b := os.Getenv("ROUTETRACE_BINARY"); b != "" {
		return b
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build routetrace with (set ROUTETRACE_BINARY)")
	}
	bin := filepath.Join(t.TempDir(), "routetrace")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/routetrace")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building routetrace: %v\n%s", err, out)
	}
	return bin
}

// parseWithRoutetrace runs `routetrace trace --help ARGS` with env as its
// whole environment. With --help the flags are parsed, names and values,
// by routetrace's own parser (urfave/cli), and the help is printed instead
// of running the tracer; a flag it does not know, or a value its type
// refuses, fails the run.
func parseWithRoutetrace(bin string, args, env []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"trace", "--help"}, args...)...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return fmt.Errorf("routetrace trace --help %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	if !strings.HasPrefix(stdout.String(), "NAME:\n   routetrace trace ") {
		first, _, _ := strings.Cut(stdout.String(), "\n")
		return fmt.Errorf("routetrace trace --help %s printed no help for trace: %s", strings.Join(args, " "), first)
	}
	return nil
}

// TestDaemonSetArgsParse checks the DaemonSet's arguments and environment
// with routetrace's flag parser, as the kubelet would pass them.
func TestDaemonSetArgsParse(t *testing.T) {
	m, err := loadManifests()
	if err != nil {
		t.Fatal(err)
	}
	ds, err := m.daemonSet()
	if err != nil {
		t.Fatal(err)
	}
	bin := routetraceBinary(t)
	for _, ip := range []string{"192.0.2.10", "2001:db8::10"} {
		inv, err := invocationOn(ds.Spec.Template.Spec.Containers[0], ip)
		if err != nil {
			t.Fatal(err)
		}
		env := append(inv.environ, "PATH="+os.Getenv("PATH"))
		if err := parseWithRoutetrace(bin, inv.args, env); err != nil {
			t.Errorf("node address %s: %v", ip, err)
			continue
		}
		// The check can fail: a flag routetrace does not have.
		err = parseWithRoutetrace(bin, append(inv.args, "--metrics-adr=9464"), env)
		if err == nil || !strings.Contains(err.Error(), "flag provided but not defined: -metrics-adr") {
			t.Errorf("the args and a misspelled flag: got %v, want routetrace to refuse the flag", err)
		}
	}
}
