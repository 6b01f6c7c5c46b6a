package otlp

import (
	"os/user"
	"path"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel/attribute"

	"github.com/routetrace/routetrace/event"
)

// Attribute keys. OpenTelemetry's semantic conventions where one exists
// (process.*, container.id, k8s.*, network.interface.name); the rest live
// under two documented namespaces: linux.* for what the kernel's routing
// state is (a route's table, a rule's priority, a netlink portid) and
// routetrace.* for what routetrace concluded (tier, origin, burst counts,
// the victim pod). The victim's Kubernetes names are under
// routetrace.victim.* so they are never read as the actor's.
const (
	keyProcessPID      = "process.pid"
	keyProcessPPID     = "process.parent_pid"
	keyExecutableName  = "process.executable.name"
	keyExecutablePath  = "process.executable.path"
	keyCommandArgs     = "process.command_args"
	keyProcessOwner    = "process.owner"
	keyCgroup          = "process.linux.cgroup"
	keyContainerID     = "container.id"
	keyContainerRT     = "container.runtime"
	keyPodName         = "k8s.pod.name"
	keyPodUID          = "k8s.pod.uid"
	keyNamespace       = "k8s.namespace.name"
	keyContainerName   = "k8s.container.name"
	keyInterfaceName   = "network.interface.name"
	keyThreadID        = "thread.id"
	keyComm            = "routetrace.actor.comm"
	keyParentComm      = "routetrace.actor.parent_comm"
	keyUnit            = "routetrace.actor.unit"
	keyUID             = "routetrace.actor.uid"
	keyActorKernel     = "routetrace.actor.kernel"
	keyActorUnknown    = "routetrace.actor.unknown"
	keyActorNetns      = "routetrace.actor.netns"
	keyEnrichError     = "routetrace.actor.enrich_error"
	keyAttach          = "routetrace.attach"
	keyOrigin          = "routetrace.origin"
	keyKernelPath      = "routetrace.kernel_path"
	keyJournalSeq      = "routetrace.journal.seq"
	keyObject          = "routetrace.object"
	keyOp              = "routetrace.operation"
	keyFamily          = "linux.family"
	keyNetns           = "linux.netns.inode"
	keyErrno           = "linux.errno"
	keyPortid          = "linux.netlink.portid"
	keyNetlinkSeq      = "linux.netlink.seq"
	keyRouteDst        = "linux.route.destination"
	keyRouteSrc        = "linux.route.source"
	keyRouteGateway    = "linux.route.gateway"
	keyRouteTable      = "linux.route.table"
	keyRouteProtocol   = "linux.route.protocol"
	keyRouteScope      = "linux.route.scope"
	keyRouteType       = "linux.route.type"
	keyRouteMetric     = "linux.route.metric"
	keyRouteOif        = "linux.route.oif"
	keyRouteNexthopID  = "linux.route.nexthop_id"
	keyRouteMultipath  = "linux.route.multipath"
	keyRouteCount      = "linux.route.count"
	keyRulePriority    = "linux.rule.priority"
	keyRuleTable       = "linux.rule.table"
	keyRuleSrc         = "linux.rule.source"
	keyRuleDst         = "linux.rule.destination"
	keyRuleIif         = "linux.rule.iif"
	keyRuleOif         = "linux.rule.oif"
	keyRuleFwmark      = "linux.rule.fwmark"
	keyRuleFwmask      = "linux.rule.fwmask"
	keyRuleAction      = "linux.rule.action"
	keyRuleGoto        = "linux.rule.goto"
	keyNexthopID       = "linux.nexthop.id"
	keyNexthopGateway  = "linux.nexthop.gateway"
	keyCauseObject     = "routetrace.cause.object"
	keyCauseOp         = "routetrace.cause.operation"
	keyCauseIfindex    = "routetrace.cause.ifindex"
	keyCausePrefix     = "routetrace.cause.address"
	keyVictimPod       = "routetrace.victim.k8s.pod.name"
	keyVictimNamespace = "routetrace.victim.k8s.namespace.name"
	keyVictimPodUID    = "routetrace.victim.k8s.pod.uid"
	keyVictimPods      = "routetrace.victim.pods"
	keyVictimLink      = "routetrace.victim.link.name"
	keyVictimLinkKind  = "routetrace.victim.link.kind"
	keyVictimCNI       = "routetrace.victim.cni"
	keyVerdict         = "routetrace.verdict"
	keyVerdictRule     = "routetrace.verdict.protected_by"
	keyVerdictReason   = "routetrace.verdict.reason"
	keyRepairMissing   = "routetrace.repair.missing_us"
	keyAggregated      = "routetrace.aggregated.count"
	keyBurstChanges    = "routetrace.burst.changes"
	keyBurstErrors     = "routetrace.burst.errors"
	keyBurstAggregated = "routetrace.burst.aggregated"
	keyBurstKernel     = "routetrace.burst.kernel_removals"
	keyBurstCountPre   = "routetrace.burst.count." // + object.op: routetrace.burst.count.route.delete
	keyBurstErrnoPre   = "routetrace.burst.errno." // + errno name: routetrace.burst.errno.ESRCH
)

// attributer turns events into span attributes. It caches user names,
// which /etc/passwd lookups would otherwise cost per span.
type attributer struct {
	commandArgs bool
	mu          sync.Mutex
	owners      map[uint32]string
}

func newAttributer(commandArgs bool) *attributer {
	return &attributer{commandArgs: commandArgs, owners: map[uint32]string{}}
}

// owner names the user uid as the node's /etc/passwd does, or gives its
// number: a container's users are often not in the node's passwd.
func (a *attributer) owner(uid uint32) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n, ok := a.owners[uid]; ok {
		return n
	}
	n := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(n); err == nil {
		n = u.Username
	}
	if len(a.owners) < 4096 {
		a.owners[uid] = n
	}
	return n
}

// actor appends the actor's attributes: who made the change.
func (a *attributer) actor(kv []attribute.KeyValue, ac *event.Actor) []attribute.KeyValue {
	if ac.Unknown() {
		return append(kv, attribute.Bool(keyActorUnknown, true))
	}
	if ac.Kernel {
		kv = append(kv, attribute.Bool(keyActorKernel, true))
		if c := ac.Comm.String(); c != "" {
			kv = append(kv, attribute.String(keyComm, c))
		}
		return kv
	}
	kv = append(kv,
		attribute.Int64(keyProcessPID, int64(ac.Tgid)),
		attribute.Int64(keyThreadID, int64(ac.Pid)),
		attribute.String(keyComm, ac.Comm.String()),
		attribute.Int64(keyUID, int64(ac.UID)),
		attribute.String(keyProcessOwner, a.owner(ac.UID)),
	)
	if ac.PPid != 0 {
		kv = append(kv, attribute.Int64(keyProcessPPID, int64(ac.PPid)))
	}
	if pc := ac.PComm.String(); pc != "" {
		kv = append(kv, attribute.String(keyParentComm, pc))
	}
	if ac.Netns != 0 {
		kv = append(kv, attribute.Int64(keyActorNetns, int64(ac.Netns)))
	}
	p := ac.Process
	if p == nil {
		return append(kv, attribute.String(keyExecutableName, ac.Comm.String()))
	}
	kv = append(kv, attribute.String(keyExecutableName, executableName(ac)))
	kv = appendOpt(kv, keyExecutablePath, p.Exe)
	if a.commandArgs && len(p.Cmdline) > 0 {
		kv = append(kv, attribute.StringSlice(keyCommandArgs, p.Cmdline))
	}
	kv = appendOpt(kv, keyCgroup, p.Cgroup)
	kv = appendOpt(kv, keyUnit, p.Unit)
	kv = appendOpt(kv, keyContainerID, p.ContainerID)
	kv = appendOpt(kv, keyContainerRT, p.Runtime)
	kv = appendOpt(kv, keyEnrichError, p.EnrichError)
	kv = appendContainer(kv, p)
	if c := p.Container; c != nil && c.Pod != nil {
		return appendOpt(kv, keyPodUID, c.Pod.UID)
	}
	return appendOpt(kv, keyPodUID, p.PodUID)
}

// appendContainer appends the actor's container and pod names.
func appendContainer(kv []attribute.KeyValue, p *event.Process) []attribute.KeyValue {
	c := p.Container
	if c == nil {
		return kv
	}
	kv = appendOpt(kv, keyContainerName, c.Name)
	if pod := c.Pod; pod != nil {
		kv = appendOpt(kv, keyPodName, pod.Name)
		kv = appendOpt(kv, keyNamespace, pod.Namespace)
	}
	return kv
}

// actorBrief appends what names the actor on each change span: enough to
// search by (pid, comm, executable, unit, pod). The rest (parent, owner,
// cgroup, command line, container id) is on the burst's root, the same
// process for every change under it: repeating it per span doubled the
// export's CPU and the backend's storage.
func (a *attributer) actorBrief(kv []attribute.KeyValue, ac *event.Actor) []attribute.KeyValue {
	if ac.Unknown() || ac.Kernel {
		return a.actor(kv, ac)
	}
	kv = append(kv, attribute.Int64(keyProcessPID, int64(ac.Tgid)), attribute.String(keyComm, ac.Comm.String()))
	p := ac.Process
	if p == nil {
		return append(kv, attribute.String(keyExecutableName, ac.Comm.String()))
	}
	kv = append(kv, attribute.String(keyExecutableName, executableName(ac)))
	kv = appendOpt(kv, keyUnit, p.Unit)
	return appendContainer(kv, p)
}

// executableName is the executable's file name, not the 15-byte comm:
// systemd-networkd, not systemd-network.
func executableName(ac *event.Actor) string {
	if ac.Process != nil && ac.Process.Exe != "" {
		return path.Base(ac.Process.Exe)
	}
	return ac.Comm.String()
}

// change appends the attributes of one change: what it was, the route or
// rule it touched, how routetrace saw it, and what it hit.
func (a *attributer) change(kv []attribute.KeyValue, ev *event.Event, seq uint64) []attribute.KeyValue {
	kv = append(kv,
		attribute.String(keyObject, ev.Object.String()),
		attribute.String(keyOp, ev.Op.String()),
		attribute.String(keyOrigin, ev.Origin.String()),
		attribute.String(keyAttach, ev.Attach.String()),
		attribute.Int64(keyNetns, int64(ev.Netns)),
		attribute.Int64(keyJournalSeq, int64(seq)),
	)
	if f := event.FamilyName(ev.Family); f != "" {
		kv = append(kv, attribute.String(keyFamily, f))
	}
	if ev.Path != event.PathNone {
		kv = append(kv, attribute.String(keyKernelPath, ev.Path.String()))
	}
	if ev.Errno != 0 {
		kv = append(kv, attribute.String(keyErrno, event.ErrnoName(ev.Errno)))
	}
	if ev.Portid != 0 {
		kv = append(kv, attribute.Int64(keyPortid, int64(ev.Portid)))
	}
	if ev.Seq != 0 {
		kv = append(kv, attribute.Int64(keyNetlinkSeq, int64(ev.Seq)))
	}
	switch {
	case ev.Op == event.OpFlush:
		kv = append(kv, attribute.Int64(keyRouteCount, int64(ev.Count)))
		if ev.Table != 0 {
			kv = append(kv, attribute.String(keyRouteTable, event.TableName(ev.Table)))
		}
	case ev.Object == event.ObjectRule:
		kv = append(kv, attribute.Int64(keyRulePriority, int64(ev.Priority)), attribute.String(keyRuleTable, event.TableName(ev.Table)))
		kv = appendPrefix(kv, keyRuleSrc, ev.Src)
		kv = appendPrefix(kv, keyRuleDst, ev.Dst)
		kv = appendOpt(kv, keyRuleIif, ev.IifName.String())
		kv = appendOpt(kv, keyRuleOif, ev.OifName.String())
		if ev.FwMark != 0 || ev.FwMask != 0 {
			kv = append(kv, attribute.Int64(keyRuleFwmark, int64(ev.FwMark)), attribute.Int64(keyRuleFwmask, int64(ev.FwMask)))
		}
		if ev.Action != event.RuleActionUnspec {
			name, _ := event.RuleActionName(ev.Action)
			kv = append(kv, attribute.String(keyRuleAction, name))
		}
		if ev.Goto != 0 {
			kv = append(kv, attribute.Int64(keyRuleGoto, int64(ev.Goto)))
		}
	case ev.Object == event.ObjectNexthop:
		kv = append(kv, attribute.Int64(keyNexthopID, int64(ev.NexthopID)), attribute.String(keyRouteProtocol, event.ProtocolName(ev.Protocol)))
		if ev.Gateway.IsValid() {
			kv = append(kv, attribute.String(keyNexthopGateway, ev.Gateway.String()))
		}
		kv = appendOpt(kv, keyInterfaceName, ev.Dev.String())
	default:
		kv = appendPrefix(kv, keyRouteDst, ev.Dst)
		kv = appendPrefix(kv, keyRouteSrc, ev.Src)
		if ev.Gateway.IsValid() {
			kv = append(kv, attribute.String(keyRouteGateway, ev.Gateway.String()))
		}
		kv = append(kv,
			attribute.String(keyRouteTable, event.TableName(ev.Table)),
			attribute.String(keyRouteProtocol, event.ProtocolName(ev.Protocol)),
			attribute.String(keyRouteScope, event.ScopeName(ev.Scope)),
			attribute.Int64(keyRouteMetric, int64(ev.Priority)))
		if ev.Type != 0 {
			kv = append(kv, attribute.String(keyRouteType, event.RouteTypeName(ev.Type)))
		}
		if ev.Oif != 0 {
			kv = append(kv, attribute.Int64(keyRouteOif, int64(ev.Oif)))
		}
		kv = appendOpt(kv, keyInterfaceName, ev.Dev.String())
		if ev.NexthopID != 0 {
			kv = append(kv, attribute.Int64(keyRouteNexthopID, int64(ev.NexthopID)))
		}
		if ev.Multipath {
			kv = append(kv, attribute.Bool(keyRouteMultipath, true))
		}
	}
	if c := &ev.Cause; c.Valid {
		kv = append(kv, attribute.String(keyCauseObject, c.Object.String()), attribute.String(keyCauseOp, c.Op.String()),
			attribute.Int64(keyCauseIfindex, int64(c.Ifindex)))
		kv = appendPrefix(kv, keyCausePrefix, c.Prefix)
	}
	v := &ev.Victim
	if l := v.Link; l != nil {
		kv = appendOpt(kv, keyVictimLink, l.Name)
		kv = appendOpt(kv, keyVictimLinkKind, l.Kind)
		kv = appendOpt(kv, keyVictimCNI, l.CNI)
	}
	if p := v.Pod; p != nil {
		kv = append(kv, attribute.String(keyVictimPod, p.Name), attribute.String(keyVictimNamespace, p.Namespace))
		kv = appendOpt(kv, keyVictimPodUID, p.UID)
	}
	if v.Pods > 0 {
		kv = append(kv, attribute.Int(keyVictimPods, v.Pods))
	}
	if f := &ev.Enforcement; f.Verdict != event.VerdictNone {
		kv = append(kv, attribute.String(keyVerdict, f.Verdict.String()))
		kv = appendOpt(kv, keyVerdictRule, f.Rule)
		kv = appendOpt(kv, keyVerdictReason, f.Reason)
		if f.Verdict == event.VerdictRepaired {
			kv = append(kv, attribute.Int64(keyRepairMissing, f.Missing.Microseconds()))
		}
	}
	return kv
}

func appendOpt(kv []attribute.KeyValue, k, v string) []attribute.KeyValue {
	if v == "" {
		return kv
	}
	return append(kv, attribute.String(k, v))
}

func appendPrefix(kv []attribute.KeyValue, k string, p interface {
	IsValid() bool
	String() string
}) []attribute.KeyValue {
	if !p.IsValid() {
		return kv
	}
	return append(kv, attribute.String(k, p.String()))
}
